"""Run the benchmarks: ``python -m bench [NAME ...]`` (default: all of them)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    # Names first; the options after them pass through to a single named benchmark
    # (python -m bench load --students 5000).
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option] or available(), argv[first_option:]
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    status = 0
    if options and len(names) != 1:
        print("bench: options go to one benchmark: python -m bench NAME [OPTIONS]", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name}", flush=True)
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", *options], cwd=HERE.parent)
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
