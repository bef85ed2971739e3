#!/usr/bin/env bash
# Runs the C++ unit tests (`bazel test //cc/...`) and copies each test target's gtest XML report (one
# <testcase> per gtest TEST) into REPORTS_DIR as cc-<target>.xml, for scripts/junit_summary.py.
# Exits non-zero when a test fails or a target produced no report.
# Usage: bash scripts/test_cc.sh [REPORTS_DIR]   (default build/test-reports)
set -uo pipefail
cd "$(dirname "$0")/.."
reports=${1:-build/test-reports}
mkdir -p "$reports"
status=0
bazel test //cc/... || status=1

mapfile -t targets < <(bazel query 'tests(//cc/...)' 2>/dev/null)
if [ ${#targets[@]} -eq 0 ]; then
  echo "test_cc: no test targets found under //cc" >&2
  exit 1
fi
testlogs=$(bazel info bazel-testlogs 2>/dev/null)
for target in "${targets[@]}"; do
  rel=${target#//}
  rel=${rel/://}
  xml="$testlogs/$rel/test.xml"
  if [ -f "$xml" ]; then
    cp "$xml" "$reports/cc-$(echo "$rel" | tr '/' '_').xml"
  else
    echo "test_cc: no report for $target ($xml)" >&2
    status=1
  fi
done
exit $status
