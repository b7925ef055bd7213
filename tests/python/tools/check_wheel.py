"""Checks that a built wheel is one abi3 wheel for CPython >= 3.10 carrying the package whole:
the compiled module, __init__.py, the stubs and the py.typed marker.

Usage: python check_wheel.py WHEEL_DIR   (prints the wheel's path; exits 1 on any problem)
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def main(wheel_dir: str) -> int:
    wheels = sorted(Path(wheel_dir).glob("hodei_workers-*.whl"))
    if len(wheels) != 1:
        print(f"expected exactly one hodei_workers wheel in {wheel_dir}, found {wheels}", file=sys.stderr)
        return 1
    wheel = wheels[0]
    problems = []
    if "-cp310-abi3-" not in wheel.name:
        problems.append(f"{wheel.name} is not tagged cp310-abi3")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("hodei_workers/__init__.py", "hodei_workers/_native.pyi", "hodei_workers/py.typed"):
        if required not in names:
            problems.append(f"{required} is missing")
    natives = [n for n in names if n.startswith("hodei_workers/_native.")]
    if not any(n.endswith(".abi3.so") or n.endswith(".pyd") for n in natives):
        problems.append(f"no abi3 compiled module among {natives}")
    for problem in problems:
        print(f"{wheel.name}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
