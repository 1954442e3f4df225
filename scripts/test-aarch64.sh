#!/usr/bin/env bash
# The AArch64 (NEON) kernels, tested on an x86-64 host: cross-compiled for
# aarch64-unknown-linux-gnu and run under qemu-user, so the SIMD-vs-scalar property tests and
# the batch-invariance tests of crates/kernels exercise neon.rs as they do avx2.rs here.
# Installs what it needs: the rustup target, Debian's cross gcc (as linker) and qemu-user.
# Extra arguments go to `cargo test`. The suite runs twice, with and without the dotprod
# extension (see below), so both K-quant paths of neon.rs are tested.
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
# Twice: on qemu's "max" CPU, which has the dotprod extension (the K-quant kernels use `sdot`),
# and on a Cortex-A53 (ARMv8.0, no dotprod: the plain NEON fallback). HEARTH_EXPECT_DOTPROD
# makes simd_path_is_active_where_supported check that the run-time detection agreed.
for cpu in max:1 cortex-a53:0; do
  echo "test-aarch64.sh: qemu-aarch64 -cpu ${cpu%:*} (dotprod expected: ${cpu#*:})" >&2
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu ${cpu%:*} -L /usr/aarch64-linux-gnu" \
    HEARTH_EXPECT_DOTPROD="${cpu#*:}" \
    cargo test --locked --release -p hearth-kernels --target "$T" "$@"
done
