#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs what the tests need
# (Mosquitto and its clients, the aarch64 linker and qemu, the onnxruntime
# library, Python's paho-mqtt and openai clients), then builds once and runs
# every test. Reuses a target directory outside the clone when one exists.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
cache="${MOE_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moe-edge}"
mkdir -p "$cache"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if [ -d /work/target ]; then export CARGO_TARGET_DIR=/work/target; else export CARGO_TARGET_DIR="$cache/target"; fi
fi
echo "target dir: $CARGO_TARGET_DIR"

sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
need_apt=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || echo "warning: apt-get install failed; tests needing ${need_apt[*]} will say they are skipped"
fi
export PATH="$PATH:/usr/sbin"

# Python clients used by third-party-client tests (never by the daemon).
if command -v python3 >/dev/null; then
  venv="$cache/venv-test"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv (paho-mqtt, openai)"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "paho-mqtt==2.1.0" "openai==1.99.9" \
      || echo "warning: pip install failed; tests using Python clients will be skipped"
  fi
  [ -x "$venv/bin/python" ] && export MOE_EDGE_PYTHON="$venv/bin/python"
fi

# ONNX Runtime for the ort backend tests (load-dynamic).
if [ -z "${ORT_DYLIB_PATH:-}" ] && [ -x scripts/fetch-onnxruntime.sh ]; then
  if lib=$(scripts/fetch-onnxruntime.sh 2>/dev/null | tail -n 1) && [ -f "$lib" ]; then
    export ORT_DYLIB_PATH="$lib"
  else
    echo "warning: could not fetch libonnxruntime.so; ort tests will be skipped"
  fi
fi

# aarch64 cross build, run under qemu by tests/aarch64.rs.
if [ -x scripts/cross-aarch64.sh ] && [ "${MOE_EDGE_SKIP_AARCH64:-0}" != 1 ]; then
  say "aarch64 build"
  if bin=$(scripts/cross-aarch64.sh | tail -n 1) && [ -f "$bin" ]; then
    export MOE_EDGE_AARCH64_BIN="$bin"
  else
    echo "warning: aarch64 build failed; the aarch64 test will be skipped"
  fi
fi

say "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast "$@"
  cargo test --doc -q
else
  cargo test --all-targets --no-fail-fast "$@"
fi
