#!/usr/bin/env bash
# The AArch64 (NEON) kernels, tested on an x86-64 host: cross-compiled for
# aarch64-unknown-linux-gnu and run under qemu-user, so the SIMD-vs-scalar property tests and
# the batch-invariance tests of crates/kernels exercise neon.rs as they do avx2.rs here.
# Installs what it needs: the rustup target, Debian's cross gcc (as linker) and qemu-user.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
T=aarch64-unknown-linux-gnu
apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
  else
    sudo apt-get install -y -q "$@" >&2
  fi
}
command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null ||
  apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
if ! rustup target list --installed | grep -qx "$T" && ! rustup target add "$T" >&2; then
  # The Rust standard library for the target comes from rustup's server, not a package
  # registry; where it cannot be reached the NEON tests cannot be built. Say so loudly.
  echo "test-aarch64.sh: SKIPPED: rustup could not install $T; NEON kernels not tested" >&2
  exit 0
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --locked --release -p hearth-kernels --target "$T" "$@"
