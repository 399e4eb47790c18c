#!/usr/bin/env bash
# foreign.sh: what multi-platform builds need here, idempotently:
#  - Debian's busybox-static for arm64, extracted to .cache/arm64/busybox
#    (the tests' and the bench's second platform);
#  - binfmt_misc mounted and qemu-aarch64 (qemu-user-static, F flag)
#    registered, so arm64 binaries run, also inside user namespaces.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
out="$repo/.cache/arm64"
if [ ! -x "$out/busybox" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null 2>&1 ) || {
    $sudo apt-get update -qq
    ( cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null )
  }
  dpkg -x "$tmp"/busybox-static_*_arm64.deb "$tmp/x"
  mkdir -p "$out"
  cp "$tmp/x/bin/busybox" "$out/busybox"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  $sudo update-binfmts --enable qemu-aarch64
fi
