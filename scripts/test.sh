#!/usr/bin/env bash
# The whole test suite on a fresh machine: provisions what the tests need
# (scripts/provision.sh: Mosquitto, the aarch64 toolchain and qemu, ONNX
# Runtime, Python's paho-mqtt and openai clients), cross-builds the aarch64
# binary the aarch64 tests run under qemu, then builds once and runs every
# test. Uses cargo's target directory ($CARGO_TARGET_DIR if set).
# Extra arguments go to `cargo nextest run` (e.g. a test filter).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
say "provisioning"
env_lines=$(scripts/provision.sh)
while IFS= read -r line; do
  [ -n "$line" ] && eval "export $line"
done <<<"$env_lines"

if [ "${MOE_EDGE_SKIP_AARCH64:-0}" != 1 ]; then
  say "aarch64 build"
  if bin=$(scripts/cross-aarch64.sh | tail -n 1) && [ -f "$bin" ]; then
    export MOE_EDGE_AARCH64_BIN="$bin"
  else
    echo "warning: aarch64 build failed; the aarch64 tests will be skipped"
  fi
fi

say "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast "$@"
  cargo test --doc -q
else
  cargo test --all-targets --no-fail-fast "$@"
fi
