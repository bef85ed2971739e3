"""Check the import contracts of pyproject.toml ([tool.importlinter]: the layers of docs/architecture.md) and
record the result as one test case in a JUnit XML report, so that ``scripts/junit_summary.py`` counts it.

Usage: ``python scripts/lint_imports.py REPORT_DIR``. Prints import-linter's output; exit status 1 when a
contract is broken (e.g. a module importing from a layer above its own).
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path


def main() -> int:
    report_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-reports")
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-logo", "--no-cache"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        output, ok = done.stdout + done.stderr, done.returncode == 0
    except OSError as err:  # not installed: pip install -e '.[dev]'
        output, ok = f"cannot run {command[0]}: {err}", False
    print(output.rstrip())
    suite = ET.Element("testsuite", name="import-linter", tests="1", failures="0" if ok else "1")
    case = ET.SubElement(
        suite, "testcase", classname="pyproject.toml", name="import contracts",
        time=f"{time.perf_counter() - started:.2f}",
    )  # fmt: skip
    if not ok:
        ET.SubElement(case, "failure", message="an import contract is broken").text = output
    ET.ElementTree(suite).write(report_dir / "import-linter.xml", encoding="utf-8", xml_declaration=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
