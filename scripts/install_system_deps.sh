#!/usr/bin/env bash
# Installs the Debian packages tfad needs, when any is missing: Python 3.11 with venv (always) and, unless
# --python-only, what the C++ service and its tests need.
set -euo pipefail
packages=(python3.11 python3.11-venv)
if [ "${1:-}" != "--python-only" ]; then
  packages+=(bazel-bootstrap libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libgtest-dev
             libpng-dev zlib1g-dev openssl)  # openssl: the TLS tests make their certificates
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
