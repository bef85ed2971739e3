"""Sum JUnit XML reports (pytest, gtest) into the closing line ``N passed, N failed``.

Exit status 1 when a test failed or errored, or when no test ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(report_dir: Path) -> tuple[int, int, int]:
    """Return (passed, failed, skipped) over every ``*.xml`` below ``report_dir``."""
    passed = failed = skipped = 0
    for path in sorted(report_dir.rglob("*.xml")):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            print(f"unreadable test report counted as a failure: {path}", file=sys.stderr)
            failed += 1
            continue
        for case in root.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("result") == "skipped":
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main() -> int:
    report_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-reports")
    passed, failed, skipped = count(report_dir)
    if skipped:
        print(f"({skipped} skipped: see the reports in {report_dir})")
    print(f"{passed} passed, {failed} failed")  # the last line, parsed by CI
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
