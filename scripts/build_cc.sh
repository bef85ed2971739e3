#!/usr/bin/env bash
# Builds the C++ inspection server, its TensorFlow back end, the client example and the unit tests:
# `bazel build //cc/...` (offline; flags in .bazelrc). Needs the Debian packages of
# scripts/install_system_deps.sh and the project venv (TensorFlow's C++ libraries come from its wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
tf_dir=.venv/lib/python3.11/site-packages/tensorflow
if [ ! -f "$tf_dir/libtensorflow_cc.so.2" ] || [ ! -d "$tf_dir/include" ]; then
  echo "build_cc: $tf_dir has no libtensorflow_cc.so.2/include: run 'make venv' first" >&2
  exit 1
fi
command -v bazel >/dev/null || { echo "build_cc: bazel not found: run 'make system-deps'" >&2; exit 1; }
bazel build //cc/... "$@"
echo "build_cc: bazel-bin/cc/tfad_server (+ libtfad_tf_backend.so beside it), bazel-bin/cc/inspect_client_example"
