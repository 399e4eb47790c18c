#!/usr/bin/env bash
# image.sh BUILDER TAG: builds builder's own image with builder — a CI job
# image for unprivileged pods: builder, newuidmap/newgidmap with file
# capabilities (no setuid bit), fuse-overlayfs, slirp4netns, busybox, CA
# certificates, a non-root user "build" (1000) with sub-id ranges inside a
# pod's 65536 ids, and a storage.conf whose store is under a volume path.
# Run as root (file capabilities are set on the copies here, and COPY keeps
# them in the layer).
set -euo pipefail
bin=$(realpath "$1")
tag=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "hack/image.sh: run as root (setcap)" >&2; exit 2; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$repo/hack/mkbase-context.sh" "$ctx"
r="$ctx/rootfs"
# What the build user owns goes in with COPY --chown (COPY makes the rest root's).
u="$ctx/userdirs"
mkdir -p "$r/usr/local/bin" "$r/usr/bin" "$r/etc/containers" "$r/etc/ssl/certs" "$r/var/tmp" \
  "$u/home/build/.local/share/containers" "$u/home/build/.config/containers" "$u/tmp/build-run" "$u/workspace"
chmod 1777 "$r/var/tmp"
cp "$bin" "$r/usr/local/bin/builder"
for b in /usr/bin/newuidmap /usr/bin/newgidmap /usr/bin/fuse-overlayfs /usr/bin/fusermount3 /usr/bin/slirp4netns; do
  cp "$b" "$r/usr/bin/"
done
# Their shared libraries, at the paths the loader looks in.
for b in "$bin" /usr/bin/newuidmap /usr/bin/newgidmap /usr/bin/fuse-overlayfs /usr/bin/fusermount3 /usr/bin/slirp4netns; do
  ldd "$b" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
done
# File capabilities instead of setuid: what newuidmap needs, nothing more.
# COPY does not carry xattrs from the context (as docker's classic COPY);
# ADD of an archive keeps them.
setcap cap_setuid+ep "$r/usr/bin/newuidmap"
setcap cap_setgid+ep "$r/usr/bin/newgidmap"
tar --xattrs --xattrs-include='security.capability' -C "$r" -cf "$ctx/idmap.tar" usr/bin/newuidmap usr/bin/newgidmap
rm "$r/usr/bin/newuidmap" "$r/usr/bin/newgidmap"
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
build:x:1000:1000:build:/home/build:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$r/etc/group" <<'G'
root:x:0:
build:x:1000:
nogroup:x:65534:
G
# A pod maps 65536 ids (0-65535): the build user's range must fit in them.
echo "build:1001:64535" > "$r/etc/subuid"
echo "build:1001:64535" > "$r/etc/subgid"
# builder's image: the store lives under a volume path (mount an emptyDir
# there in a pod); overlay when the kernel allows it, else builder falls
# back to fuse-overlayfs (with /dev/fuse) or copies, and says so. Root (a
# kaniko-style pod) uses /etc's, the build user its own.
cat > "$r/etc/containers/storage.conf" <<'S'
[storage]
driver = "overlay"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
S
cat > "$u/home/build/.config/containers/storage.conf" <<'S'
[storage]
driver = "overlay"
graphroot = "/home/build/.local/share/containers/storage"
runroot = "/tmp/build-run/containers"
S
cat > "$r/etc/containers/policy.json" <<'J'
{"default": [{"type": "insecureAcceptAnything"}]}
J
mkdir -p "$r/var/lib/containers/storage" "$r/run/containers"
cat > "$ctx/Dockerfile" <<'D'
FROM scratch
COPY rootfs/ /
COPY --chown=1000:1000 userdirs/ /
ADD idmap.tar /
ENV HOME=/home/build USER=build XDG_RUNTIME_DIR=/tmp/build-run PATH=/usr/local/bin:/usr/bin:/bin
VOLUME /home/build/.local/share/containers
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["/usr/local/bin/builder"]
CMD ["info"]
D
"$bin" bud --layers=false -t "$tag" "$ctx"
