"""``python -m bench NAME [--quick]``: run one benchmark, print its JSON summary as the last line.

Each benchmark is a module ``bench/NAME.py`` with ``run(quick: bool) -> dict`` returning the summary
(see bench/summary.py for the shape). Progress goes to stderr; stdout ends with the JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

NAMES = ("simulate", "gateway", "storage", "kernels", "processor", "pipeline", "baselines")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=NAMES, help="which benchmark")
    parser.add_argument("--quick", action="store_true", help="short smoke run (what CI uses)")
    args = parser.parse_args()
    try:
        mod = importlib.import_module(f"bench.{args.name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{args.name}":
            raise
        print(f"benchmark {args.name} is not built yet", file=sys.stderr)
        return 2
    summary = mod.run(quick=args.quick)
    sys.stdout.write(json.dumps(summary, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
