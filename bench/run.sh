#!/usr/bin/env bash
# make bench: builder against Debian's buildah, same machine, same run, same
# unprivileged user, same base image (an OCI layout the suite writes from
# Debian's busybox-static; for the multiarch case an index of it and of
# Debian's arm64 busybox-static, whose RUN goes through qemu-user).
# Rootless, overlay storage, a fresh store for every cold build, a local
# registry on 127.0.0.1 for pushes. The pod cases (copy-big, run10) are also
# built inside the pod stand-in: builder's own image (hack/image.sh, built
# here with the binary measured) run by root's podman as uid 1000 with
# podman's default seccomp profile (bench pod, as root, before the run;
# bench run reports those times next to the host's).
#
#   bench/run.sh [--repeat N] [--cases meta,run10,...] [--base oci|registry] [-v]
#
# Run as root: it installs what it needs, creates the unprivileged user
# builderbench, then runs bench/cmd/bench as that user. That program
# generates the contexts, measures the floors, checks that both tools build
# the same file tree for every case (and stops if not), times everything,
# prints a Markdown table and writes bench/results.json. See README.md,
# "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" -h "*|*" --help "*)
  echo "usage: $0 [--repeat N] [--cases a,b] [--base oci|registry] [-v]"; exit 0 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: run as root (it creates its unprivileged bench user)" >&2; exit 2; }

pkgs=(buildah runc uidmap busybox-static docker-registry skopeo time qemu-user-static binfmt-support
  podman fuse-overlayfs fuse3 slirp4netns libcap2-bin) # the last line: hack/image.sh and the pod stand-in
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The multiarch case's second platform: arm64 busybox-static in
# .cache/arm64/busybox, qemu-aarch64 registered in binfmt_misc (F flag).
hack/foreign.sh
# Debian's registry package starts a service on :5000; the bench starts its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

tags="containers_image_openpgp exclude_graphdriver_btrfs"
make -s build # always: a stale binary would be measured otherwise

user=builderbench
id $user >/dev/null 2>&1 || useradd -m -s /bin/sh $user
uid=$(id -u $user)
home=$(getent passwd $user | cut -d: -f6)
mkdir -p /run/user/$uid && chown $user: /run/user/$uid && chmod 700 /run/user/$uid
as() { runuser -u $user -- env HOME="$home" XDG_RUNTIME_DIR=/run/user/$uid USER=$user LOGNAME=$user PATH="$PATH" "$@"; }
as sh -c 'mkdir -p ~/.config/containers && printf "[storage]\ndriver = \"overlay\"\n" > ~/.config/containers/storage.conf'

# Lower case only: buildah 1.28 names the FROM oci:DIR container after DIR.
work=/tmp/builder-bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
mkdir -m 700 "$work"
podtag=localhost/builder-bench-pod:latest
trap 'rm -rf "$work"; podman rmi -f "$podtag" >/dev/null 2>&1 || true' EXIT
go build -tags "$tags" -o "$work/bench" ./bench/cmd/bench
cp bin/builder "$work/builder"
cp .cache/arm64/busybox "$work/busybox-arm64"
chmod 755 "$work"
chown -R $user: "$work"

# The pod stand-in, as root (root's podman, root's store): its image from
# the binary measured, then the pod cases' cold builds in it, to
# $work/pod/pod.json (nothing when --cases selects no pod case).
hack/image.sh "$work/builder" "$podtag" >"$work/pod-image.log" 2>&1 || { cat "$work/pod-image.log" >&2; exit 1; }
mkdir -m 755 "$work/pod"
status=0
"$work/bench" pod --work "$work/pod" --builder "$work/builder" --image "$podtag" --out "$work/pod/pod.json" "$@" || status=$?
if [ $status -eq 0 ]; then
  (cd "$work" && as "$work/bench" run --work "$work" --builder "$work/builder" --arm64-busybox "$work/busybox-arm64" --out "$work/results.json" --pod "$work/pod/pod.json" "$@") || status=$?
fi
if [ $status -ne 0 ]; then
  trap - EXIT
  echo "bench failed; its inputs and exported images are kept in $work (rm -rf it when done)" >&2
  exit $status
fi
cp "$work/results.json" bench/results.json
echo "wrote bench/results.json"
