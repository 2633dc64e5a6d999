"""``python -m bench.smoke NAME...``: run each built benchmark with --quick and check its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REQUIRED = ("benchmark", "params", "results")


def main(names: list[str]) -> int:
    failed = []
    ran = 0
    for name in names:
        if not (Path(__file__).parent / f"{name}.py").exists():
            print(f"bench smoke: {name}: not built yet", flush=True)
            continue
        ran += 1
        proc = subprocess.run(
            [sys.executable, "-m", "bench", name, "--quick"],
            capture_output=True,
            text=True,
            check=False,
        )
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        try:
            summary = json.loads(last)
            ok = proc.returncode == 0 and all(k in summary for k in REQUIRED)
        except json.JSONDecodeError:
            summary, ok = None, False
        print(f"bench smoke: {name}: {'ok' if ok else 'FAILED'} {last[:400]}", flush=True)
        if not ok:
            failed.append(name)
            print(proc.stderr[-3000:], file=sys.stderr)
    if ran == 0:
        print("bench smoke: no benchmark ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
