#!/usr/bin/env bash
# Fetches what `hub image build` and the qemu tests need into a cache
# directory, without installing any of it: Debian's generic kernel (modules
# included), systemd-boot and its UKI stub, and OVMF firmware.
# `apt-get download` + `dpkg-deb -x`; idempotent (skips a package whose
# directory exists). Prints the pinned versions it used, and writes them to
# $OUT/versions.txt.
#
# Usage: ci/fetch-image-inputs.sh [OUT]   (default: .cache/image-inputs)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.cache/image-inputs}"
mkdir -p "$out/debs"
out="$(cd "$out" && pwd)"

# The generic kernel's real package is the dependency of the meta package.
kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [ -z "$kpkg" ]; then
  echo "fetch-image-inputs: cannot resolve linux-image-amd64 (run apt-get update?)" >&2
  exit 1
fi

fetch() { # package → extracted into $out/pkg/<package>
  local pkg="$1" dir="$out/pkg/$1"
  if [ -d "$dir" ]; then return; fi
  # (apt warns when root downloads into a directory _apt cannot write; harmless)
  (cd "$out/debs" && apt-get download -q "$pkg" 2>&1 >/dev/null | grep -v "^W: Download is performed unsandboxed" >&2 || true)
  local deb
  deb="$(ls -t "$out/debs/${pkg}"_*.deb | head -n1)"
  mkdir -p "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp"
  mv "$dir.tmp" "$dir"
}

for p in "$kpkg" systemd-boot-efi ovmf; do fetch "$p"; done

# Debian generates modules.dep at install time; do the same, without root.
kver="${kpkg#linux-image-}"
if [ ! -s "$out/pkg/$kpkg/lib/modules/$kver/modules.dep" ]; then
  depmod -b "$out/pkg/$kpkg" "$kver"
fi

# Stable names the image builder and the tests default to.
ln -sfn "pkg/$kpkg/boot/vmlinuz-$kver" "$out/vmlinuz"
ln -sfn "pkg/$kpkg/lib/modules/$kver" "$out/modules"
ln -sfn "pkg/systemd-boot-efi/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$out/linuxx64.efi.stub"
ln -sfn "pkg/systemd-boot-efi/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$out/systemd-bootx64.efi"
ln -sfn "pkg/ovmf/usr/share/OVMF/OVMF_CODE_4M.fd" "$out/OVMF_CODE.fd"
ln -sfn "pkg/ovmf/usr/share/OVMF/OVMF_VARS_4M.fd" "$out/OVMF_VARS.fd"

{
  for deb in "$out"/debs/*.deb; do
    dpkg-deb -f "$deb" Package Version | paste -sd' '
  done
} | sort -u > "$out/versions.txt.tmp"
mv "$out/versions.txt.tmp" "$out/versions.txt"
echo "image inputs in $out:"
sed 's/^/  /' "$out/versions.txt"
