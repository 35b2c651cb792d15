#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine.
# Idempotent: skips what is already there. Sourced by demo.sh and test.sh.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
# The age CLI: the backup tests decrypt backups with it, as an operator would.
command -v age >/dev/null 2>&1 || need_apt+=(age)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# The appliance image (hub image build) and its qemu tests.
command -v sfdisk >/dev/null 2>&1 || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need_apt+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need_apt+=(mtools)
command -v mkfs.ext4 >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v depmod >/dev/null 2>&1 || need_apt+=(kmod)
command -v objcopy >/dev/null 2>&1 || need_apt+=(binutils)
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
# qemu-system-x86 needs the qemu-utils of its own version: a machine that
# came with a backported qemu-utils (seen: 10.0 on Debian 12, where
# qemu-system-x86 is 7.2) refuses the pair as "held broken packages", so
# qemu-utils is pinned to the candidate of qemu-system-x86 (a downgrade).
need_qemu_system=0
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_qemu_system=1
# Installs Debian packages, as root or through sudo (test.sh uses it too).
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install --no-install-recommends "${need_apt[@]}"
fi
if [ "$need_qemu_system" -eq 1 ]; then
  $SUDO apt-get update -qq
  qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  apt_install --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$qemu_version" "qemu-utils=$qemu_version"
fi
for tool in cc zstd age openssl sfdisk mkfs.vfat mcopy mkfs.ext4 qemu-img qemu-system-x86_64; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing after installing packages" >&2; exit 1; }
done

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    # Debian 12's rustc is too old for this workspace; rustup brings a current stable.
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
