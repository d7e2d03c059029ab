#!/usr/bin/env bash
# Fetch libonnxruntime.so (CPU build) from the PyPI `onnxruntime` wheel into a
# cache outside the clone and print the library's path, for ORT_DYLIB_PATH:
#
#   export ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
#
# The version is pinned: the `ort` crate is built with `api-18` (ONNX Runtime
# 1.18, what JetPack 6.0 ships; newer runtimes accept older API levels), and
# 1.19.2 is the oldest PyPI wheel >= 1.18 that ships `libonnxruntime.so`
# (the 1.18.x wheels link it statically into the Python extension). Override
# with ORT_VERSION=1.x.y (>= 1.19). Only the wheel is downloaded (pip
# download --no-deps, a binary wheel for this machine's architecture); nothing
# is installed into Python. Re-running with the library already cached prints
# its path without touching the network.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.19.2}"
CACHE="${MOE_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moe-edge}"
case "$(uname -m)" in
  x86_64) PLATFORM=manylinux_2_27_x86_64 ;;
  aarch64|arm64) PLATFORM=manylinux_2_27_aarch64 ;;
  *) echo "fetch-onnxruntime: no onnxruntime wheel for $(uname -m)" >&2; exit 1 ;;
esac
DEST="$CACHE/onnxruntime-$ORT_VERSION-$(uname -m)"

find_lib() {
  find "$DEST/onnxruntime/capi" -maxdepth 1 -name 'libonnxruntime.so*' -type f 2>/dev/null | sort | head -n 1
}

lib="$(find_lib || true)"
if [[ -z "$lib" ]]; then
  PIP="${PIP:-$(command -v pip3 || command -v pip || true)}"
  if [[ -z "$PIP" ]]; then
    echo "fetch-onnxruntime: pip not found (install python3-pip, or set ORT_DYLIB_PATH yourself)" >&2
    exit 1
  fi
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.fetch-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Any CPython tag works: the shared library inside is the same.
  "$PIP" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "$PLATFORM" --python-version 3.11 --implementation cp \
    -d "$tmp" "onnxruntime==$ORT_VERSION" >&2
  wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n 1)"
  rm -rf "$tmp/x" && mkdir "$tmp/x"
  python3 -m zipfile -e "$wheel" "$tmp/x" >/dev/null 2>&1 || unzip -q "$wheel" -d "$tmp/x"
  rm -rf "$DEST"
  mkdir -p "$DEST/onnxruntime"
  mv "$tmp/x/onnxruntime/capi" "$DEST/onnxruntime/capi"
  # Keep only what a daemon needs: the libraries (drop the Python extension).
  find "$DEST/onnxruntime/capi" -type f ! -name '*.so*' -delete
  rm -f "$DEST/onnxruntime/capi"/onnxruntime_pybind11_state*.so
  lib="$(find_lib || true)"
  if [[ -z "$lib" ]]; then
    echo "fetch-onnxruntime: no libonnxruntime.so in $wheel" >&2
    exit 1
  fi
fi
echo "$lib"
