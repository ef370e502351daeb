"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in turn (``make bench``)."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def bench_modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return [f"benchmarks.{p.stem}" for p in sorted(here.glob("bench_*.py"))]


def main(argv: list[str] | None = None) -> int:
    """Run all benchmarks, or only those whose module name contains an argument."""
    wanted = sys.argv[1:] if argv is None else argv
    failed = []
    for name in bench_modules():
        if wanted and not any(w in name for w in wanted):
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        saved_argv = sys.argv
        sys.argv = [name]  # each benchmark parses its own (empty) command line
        try:
            rc = importlib.import_module(name).main()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 -- one broken benchmark must not hide the others
            print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        finally:
            sys.argv = saved_argv
        if rc:
            failed.append(name)
        print(f"== {name} done in {time.monotonic() - t0:.1f} s", flush=True)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
