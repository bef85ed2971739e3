#!/usr/bin/env bash
# Runs every test (the import contracts via import-linter, Python via pytest, C++ via `bazel test`), collects
# their JUnit XML reports and prints one closing line `N passed, N failed` counting all of them (the import
# contracts count as one test). Exits non-zero on any failure.
set -uo pipefail
PY=${1:-.venv/bin/python}
reports=build/test-reports
rm -rf "$reports" && mkdir -p "$reports"
status=0

echo "== Import contracts (pyproject.toml [tool.importlinter], docs/architecture.md)"
$PY scripts/lint_imports.py "$reports" || status=1

echo "== Python tests"
# Two pytest workers, each taking whole files (so a module's fixtures, e.g. a trained run, are built once):
# much of a test's time is single-threaded (Python imports, tracing, subprocess start-up), so two workers
# on two cores took it from 16.9 to 10.2 min on a 2-core Zen 4 PC (README, "Tests").
# TFAD_TEST_WORKERS=0 runs it in one process.
workers=${TFAD_TEST_WORKERS:-2}
parallel=()
[ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadfile)
$PY -m pytest -q "${parallel[@]}" -p no:cacheprovider --junitxml="$reports/pytest.xml" tests || status=1

if [ -x scripts/test_cc.sh ]; then
  echo "== C++ unit tests"
  bash scripts/test_cc.sh "$reports" || status=1
fi

$PY scripts/junit_summary.py "$reports" || status=1
exit $status
