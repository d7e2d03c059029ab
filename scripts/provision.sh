#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and prints, on stdout, the
# environment the tests read (KEY=VALUE lines, for `eval`):
#
#   eval "$(scripts/provision.sh)"
#
# - Debian packages: mosquitto and its clients (tests against a real external
#   broker, third-party CLI clients), the aarch64 cross linker and qemu-user
#   (the cross build runs under emulation);
# - a Python venv with paho-mqtt and openai (third-party clients only; the
#   daemon never needs Python): MOE_EDGE_PYTHON;
# - ONNX Runtime's libonnxruntime.so from the PyPI wheel: ORT_DYLIB_PATH.
# Whatever cannot be installed is reported on stderr; the tests that need it
# then say they are skipped. Caches live in $MOE_EDGE_CACHE (default
# ~/.cache/moe-edge), outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }
cache="${MOE_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moe-edge}"
mkdir -p "$cache"

sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
need_apt=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]}"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"; } >/dev/null 2>&1 \
    || say "warning: apt-get install failed; tests needing ${need_apt[*]} will say they are skipped"
fi
echo "PATH=\"$PATH:/usr/sbin\""

if command -v python3 >/dev/null; then
  venv="$cache/venv-test"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import paho.mqtt, openai' 2>/dev/null; then
    say "creating $venv (paho-mqtt, openai)"
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q "paho-mqtt==2.1.0" "openai==1.99.9"; } >&2 \
      || say "warning: pip install failed; tests using Python clients will be skipped"
  fi
  [ -x "$venv/bin/python" ] && echo "MOE_EDGE_PYTHON=\"$venv/bin/python\""
fi

if [ -n "${ORT_DYLIB_PATH:-}" ]; then
  echo "ORT_DYLIB_PATH=\"$ORT_DYLIB_PATH\""
elif lib=$(scripts/fetch-onnxruntime.sh 2>/dev/null | tail -n 1) && [ -f "$lib" ]; then
  echo "ORT_DYLIB_PATH=\"$lib\""
else
  say "warning: could not fetch libonnxruntime.so; ort tests will be skipped"
fi
