"""The house's rules, read from the code's own imports (every import, lazy ones inside
functions included, so a rule cannot be dodged by moving an import into a function).

1. The engine knows jobs only through the registry: no module of scheduling/ outside
   scheduling/jobs/ imports the domain apps (interventions, iep, notifications); of students
   it imports only the tenant (District) and who may act (Role, students.roles, the rule
   for a district's zone, students.zones, and when its schools are in session,
   students.calendar).
2. No import cycle between modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("skillcore", "students", "interventions", "iep", "notifications", "scheduling")
DOMAIN = ("interventions", "iep", "notifications")
# The tenant and who may act: what the engine may take from students.
STUDENTS_ALLOWED = {
    "students.models": {"District", "Role"},
    "students.roles": None,  # any name
    "students.zones": None,
    "students.calendar": None,  # a "school days" job's slot is decided from the calendar
}


def _modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, set[str] | None, int]]:
    """(module imported, names taken from it or None for ``import x``, line) for every import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, {alias.name for alias in node.names}, node.lineno))
    return out


def _targets(module: str, names: set[str] | None) -> set[str]:
    """The project modules an import statement loads: ``from a import b`` is module a.b when
    that is a module, else package a."""
    targets = set()
    if names:
        for name in names:
            if f"{module}.{name}" in MODULES:
                targets.add(f"{module}.{name}")
            elif module in MODULES:
                targets.add(module)
    elif module in MODULES:
        targets.add(module)
    return targets


def _is_engine(name: str) -> bool:
    return name.split(".")[0] == "scheduling" and not name.startswith("scheduling.jobs")


def test_the_engine_imports_no_domain_app_and_of_students_only_the_tenant_and_roles():
    broken = []
    for name, path in sorted(MODULES.items()):
        if not _is_engine(name):
            continue
        for module, names, line in _imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if top in DOMAIN:
                broken.append(where)
            elif top == "students":
                if module not in STUDENTS_ALLOWED:
                    broken.append(where)
                elif STUDENTS_ALLOWED[module] is not None and not (names or set()) <= STUDENTS_ALLOWED[module]:
                    broken.append(f"{where} ({', '.join(sorted((names or set()) - STUDENTS_ALLOWED[module]))})")
    assert not broken, "the engine reaches into the domain apps:\n" + "\n".join(broken)


def test_the_rule_sees_a_lazy_import_inside_a_function(tmp_path):
    """The checker itself: an import hidden in a function body is still an import."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from iep.models import IEP\n    return IEP\n")
    assert _imports(sample) == [("iep.models", {"IEP"}, 2)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _line in _imports(path):
            graph[name] |= _targets(module, names) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    cycles = _cycles(_graph())
    assert not cycles, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
