#!/usr/bin/env bash
# Build the `moe-edge` binary for aarch64-unknown-linux-gnu on this machine
# with Debian's cross toolchain (gcc-aarch64-linux-gnu), tract backend only,
# into cargo's target directory ($CARGO_TARGET_DIR if set), and print the
# binary's path on the last line.
# tests/aarch64.rs runs it under qemu-aarch64 (MOE_EDGE_AARCH64_BIN=<path>).
#
#   MOE_EDGE_AARCH64_BIN="$(scripts/cross-aarch64.sh | tail -n 1)"
#
# PROFILE=release builds the release profile (default: dev, which is what the
# native test binary is built with). For the Jetson deployment build use
# cross and cross.toml instead (see deploy/README-jetson.md): this script is
# for testing the aarch64 build here.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
PROFILE="${PROFILE:-dev}"
SYSROOT=/usr/aarch64-linux-gnu

for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "cross-aarch64: $tool not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
    exit 1
  fi
done
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "cross-aarch64: rustup target add $TARGET" >&2
  rustup target add "$TARGET" >&2
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
# C code of dependencies (ring) through the cc crate.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

start=$(date +%s)
cargo build --target "$TARGET" --profile "$PROFILE" --no-default-features --features tract --bin moe-edge >&2
took=$(( $(date +%s) - start ))

dir="$PROFILE"; [[ "$PROFILE" == dev ]] && dir=debug
bin="$target_dir/$TARGET/$dir/moe-edge"
[[ -x "$bin" ]] || { echo "cross-aarch64: no binary at $bin" >&2; exit 1; }

# The newest glibc symbol version the binary needs (JetPack 6 has 2.35).
if command -v aarch64-linux-gnu-objdump >/dev/null; then
  glibc=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
  echo "cross-aarch64: built in ${took}s, needs ${glibc:-no versioned glibc}" >&2
else
  echo "cross-aarch64: built in ${took}s" >&2
fi
echo "$bin"
