#!/usr/bin/env bash
# Generates the Python gRPC stubs for protos/ into tfad/serving/proto_gen/ (gitignored, shipped as package
# data). Idempotent: does nothing when the stubs are newer than every .proto and this script.
# Usage: bash scripts/gen_protos.sh [PYTHON]   (default .venv/bin/python; needs grpcio-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
out=tfad/serving/proto_gen
stamp="$out/.generated"
mapfile -t protos < <(find protos -name '*.proto' | sort)
if [ ${#protos[@]} -eq 0 ]; then
  echo "gen_protos: no .proto files under protos/" >&2
  exit 1
fi

if [ -f "$stamp" ]; then
  newer=$(find protos scripts/gen_protos.sh -newer "$stamp" \( -name '*.proto' -o -name 'gen_protos.sh' \) | head -1)
  if [ -z "$newer" ]; then
    echo "gen_protos: up to date"
    exit 0
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m grpc_tools.protoc -Iprotos --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${protos[@]}"

# protoc mirrors the proto path (tfad/inspection/v1/...), which would shadow the `tfad` package; flatten the
# modules into proto_gen/ and make their imports relative so they import as tfad.serving.proto_gen.*.
rm -rf "$out" && mkdir -p "$out"
while IFS= read -r f; do
  base=$(basename "$f")
  sed -E 's/^from tfad\.inspection\.v1 import ([a-z_0-9]+)/from . import \1/' "$f" > "$out/$base"
done < <(find "$tmp" -name '*.py' -o -name '*.pyi')
cat > "$out/__init__.py" <<'PYEOF'
"""Generated gRPC/protobuf modules for tfad.inspection.v1 (scripts/gen_protos.sh; do not edit)."""
PYEOF
touch "$stamp"
echo "gen_protos: generated $(ls "$out" | grep -c '\.py$') modules in $out"
