"""The docs say what the code is: the jobs table matches the registry, every repository path
and link a page names exists, every docs page is reachable from the README, and every
environment variable the settings read is documented.

These fail on the next file move, job or setting until the docs follow it.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from scheduling import registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

# Jobs declared by the project (tests add their own at run time; the list is taken at
# collection, before any test registers one, as tests/guarantees does).
PROJECT_JOBS = registry.all_jobs()

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path: no leading slash, a '/' inside, a known file type or a trailing '/'
# for a folder; optionally ::name (a test or any name defined in the .py file).
REPO_PATH = re.compile(
    r"(?P<path>[A-Za-z0-9_.][\w.-]*/[\w./-]*?(?:\.py|\.md|\.yml|\.html|\.png|/))"
    r"(?P<names>(?:::\w+)+(?:\[[^\]]*\])?)?"
)
# A dotted name in one of the project's packages: a module, a name in it, or a model (app.Model).
DOTTED = re.compile(r"(?P<dotted>(?:skillcore|students|interventions|iep|notifications|scheduling)(?:\.\w+)+)(?:\(.*\))?")
FOLLOWING_NAME = re.compile(r"(?P<names>(?:::\w+)+)(?:\[[^\]]*\])?")


def prose(page: Path) -> str:
    """The page without its fenced blocks (commands and diagrams, not references)."""
    return FENCE.sub(lambda block: "\n" * block.group(0).count("\n"), page.read_text())  # lines keep their numbers


@cache
def defined_names(py_file: Path) -> frozenset[str]:
    tree = ast.parse(py_file.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


@cache
def top_level_classes(py_file: Path) -> frozenset[str]:
    tree = ast.parse(py_file.read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return frozenset(names)


def dotted_problem(dotted: str) -> str | None:
    """Why ``dotted`` names nothing in the repository, or None when it does."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        module = next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)
        if module:
            break
    rest = parts[i:]
    if not rest:
        return None
    app_sources = (ROOT / parts[0]).rglob("*.py")
    if any(f"'{dotted}'" in f.read_text() for f in app_sources):
        return None  # a name the code spells as a string: a PostgreSQL setting, a task path
    files = [module]
    known = defined_names(module)
    if i == 1:  # app.Model: a class of the app's models module or package
        files = [f for f in [ROOT / parts[0] / "models.py", *(ROOT / parts[0] / "models").glob("*.py")] if f.is_file()]
        classes = set().union(*(top_level_classes(f) for f in files))
        known = set().union(*(defined_names(f) for f in files)) if rest[0] in classes else classes
    undefined = [n for n in rest if n not in known]
    if undefined:
        return f"{'.'.join(undefined)} is not defined in {', '.join(str(f.relative_to(ROOT)) for f in files)}"
    return None


def path_references(page: Path):
    """(path, names, where) for each repository path in a code span of the page; a span that
    is only ``::name`` refers to the last .py path named before it on the page. A dotted name
    (``scheduling.runner.execute``) comes as (dotted, None, where)."""
    last_py = None
    for number, line in enumerate(prose(page).splitlines(), 1):
        for span in CODE_SPAN.findall(line):
            where = f"{page.relative_to(ROOT)}:{number}: `{span}`"
            match = REPO_PATH.fullmatch(span)
            if match:
                path = match["path"]
                names = [n for n in (match["names"] or "").split("[")[0].split("::") if n]
                if path.endswith(".py"):
                    last_py = path
                yield path, names, where
                continue
            dotted = DOTTED.fullmatch(span)
            if dotted:
                yield dotted["dotted"], None, where
                continue
            following = FOLLOWING_NAME.fullmatch(span)
            if following and last_py:
                yield last_py, [n for n in following["names"].split("::") if n], where


def jobs_table() -> list[list[str]]:
    """The rows of docs/jobs.md's first table (the one whose first column is 'job')."""
    lines = (DOCS / "jobs.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*job\s*\|", line))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def declaring_module(job: registry.Job) -> str:
    """The path of the scheduling/jobs/ module whose JOB (or JOBS) is this job."""
    import scheduling.jobs as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if getattr(module, "JOB", None) is job or job in getattr(module, "JOBS", ()):
            return str(Path(module.__file__).relative_to(ROOT))
    raise AssertionError(f"{job.slug} is declared outside scheduling/jobs/")


def test_the_jobs_table_has_one_row_per_registered_job_with_its_cron():
    rows = jobs_table()
    slugs = [re.search(r"`([a-z0-9-]+)`", row[0]).group(1) for row in rows]
    assert sorted(slugs) == sorted(job.slug for job in PROJECT_JOBS), (
        "docs/jobs.md's table must have exactly one row per job of scheduling.registry.all_jobs()"
    )
    for job in PROJECT_JOBS:
        (row,) = [r for r, slug in zip(rows, slugs) if slug == job.slug]
        when = row[1]
        if job.default_cron:
            assert f"`{job.default_cron}`" in when, f"{job.slug}: its row should say `{job.default_cron}`, says {when!r}"
        else:
            assert "no cron" in when, f"{job.slug} has no cron; its row says {when!r}"


def test_the_jobs_page_has_a_section_per_job_naming_its_module():
    text = (DOCS / "jobs.md").read_text()
    sections = re.split(r"(?m)^## ", text)
    for job in PROJECT_JOBS:
        (section,) = [s for s in sections if s.startswith(f"{job.slug}\n")]
        module = declaring_module(job)
        assert f"`{module}`" in section, f"the {job.slug} section should name `{module}`"
        cron_text = f"`{job.default_cron}`" if job.default_cron else "no cron"
        assert cron_text in section, f"the {job.slug} section should say {cron_text}"


def test_the_path_check_reads_paths_and_names():
    refs = {
        span: REPO_PATH.fullmatch(span)
        for span in ["scheduling/runner.py", "docs/guarantees.md", "tests/jobs/",
                     "tests/x.py::test_a[<job>]", "/admin/scheduled-jobs/", "MEDIA_ROOT/archive",
                     "scheduling/jobs/<slug>.py", "postgres://u@h/db"]
    }
    assert {span for span, m in refs.items() if m} == {
        "scheduling/runner.py", "docs/guarantees.md", "tests/jobs/", "tests/x.py::test_a[<job>]"}
    assert "test_the_path_check_reads_paths_and_names" in defined_names(Path(__file__))
    assert dotted_problem("scheduling.registry.all_jobs") is None
    assert dotted_problem("scheduling.registry") is None
    assert dotted_problem("scheduling.JobRun") is None
    assert "no_such_name" in dotted_problem("scheduling.registry.no_such_name")
    assert "NoSuchModel" in dotted_problem("students.NoSuchModel")
    assert "status" in dotted_problem("scheduling.status")  # a field name, not a model


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_page_names_exists(page):
    missing = []
    for path, names, where in path_references(page):
        if names is None:  # a dotted name
            problem = dotted_problem(path)
            if problem:
                missing.append(f"{where}: {problem}")
            continue
        target = ROOT / path
        if not target.exists():
            missing.append(f"{where}: {path} does not exist")
            continue
        if names and path.endswith(".py"):
            undefined = [n for n in names if n not in defined_names(target)]
            if undefined:
                missing.append(f"{where}: {', '.join(undefined)} not defined in {path}")
    assert not missing, "stale paths in the docs:\n" + "\n".join(missing)


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped (hyphens kept), spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"(?m)^#{1,6} +(.+?)\s*$", prose(page)):
        text = unicodedata.normalize("NFKC", heading).lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_a_page_makes_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            broken.append(f"{page.relative_to(ROOT)}: {target} points outside the repository")
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{page.relative_to(ROOT)}: {target} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{page.relative_to(ROOT)}: {target} has no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(readme)}
    pages = [p for p in DOCS.rglob("*") if p.is_file()]
    assert pages
    unlinked = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not unlinked, f"README.md's 'Where to go next' should link {unlinked}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_environment_variable_the_settings_read_is_in_the_configuration_page():
    read = set()
    for py in ROOT.glob("*/*.py"):
        if py.parts[-2] in {"tests", "bench", ".venv"}:
            continue
        read.update(re.findall(r"env\.get_\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", py.read_text()))
    assert "DATABASE_URL" in read and "SECRET_KEY" in read
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (DOCS / "configuration.md").read_text()))
    assert not read - documented, f"docs/configuration.md should list {sorted(read - documented)}"
