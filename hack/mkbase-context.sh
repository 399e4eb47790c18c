#!/usr/bin/env bash
# mkbase-context.sh DIR [BUSYBOX]: lays out a tiny busybox root filesystem in
# DIR/rootfs (from Debian's busybox-static, or the static BUSYBOX given, e.g.
# another architecture's) to be COPYed into a FROM scratch image.
set -euo pipefail
dir=$1
bb=${2:-/bin/busybox}
[ -x "$bb" ] || bb=$(command -v busybox)
r="$dir/rootfs"
rm -rf "$r"
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/home/app" "$r/var/log"
chmod 1777 "$r/tmp"
cp "$bb" "$r/bin/busybox"
for a in sh ls cat echo mkdir rm cp mv ln chmod chown id true false test stat touch sleep env wc grep sed find head tail tar gzip printf uname hostname ps wget nc ip mount readlink sha256sum; do
  ln -sf busybox "$r/bin/$a"
done
cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$r/etc/group" <<'G'
root:x:0:
wheel:x:10:app
app:x:1000:
nogroup:x:65534:
G
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n' > "$dir/Dockerfile"
