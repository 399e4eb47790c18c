#!/usr/bin/env bash
# Installs the Debian packages builder's build, demo and tests use (plus the C
# headers that let a plain `go build ./...` without the Makefile tags work), only if
# missing, and fetches Go modules. Safe to run repeatedly.
set -euo pipefail
pkgs=(busybox-static qemu-user-static binfmt-support openssh-client git bzip2 tar slirp4netns uidmap fuse-overlayfs docker-registry skopeo umoci oci-image-tool podman buildah runc crun time hyperfine jq apache2-utils libgpgme-dev libbtrfs-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The registry package starts a system service we do not want holding :5000.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl stop docker-registry 2>/dev/null || true
fi
go mod download
