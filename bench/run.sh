#!/usr/bin/env bash
# make bench: builder against Debian's buildah, same machine, same run, same
# unprivileged user, same base image (a busybox image in that user's store,
# made from Debian's busybox-static). Rootless, overlay storage for both.
#
#   bench/run.sh [--repeat N] [--cases meta,run10]
#
# Prints a table and writes bench/results.json. Timings are hyperfine
# medians of N runs (default 5); builds are cold for both tools (no layer
# reuse: buildah --no-cache --layers=false; builder has no cache yet).
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=5
cases=meta,run10
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) repeat=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    *) echo "usage: $0 [--repeat N] [--cases a,b]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: run as root (it creates its unprivileged bench user)" >&2; exit 2; }
for p in buildah hyperfine jq; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done

user=builderbench
id $user >/dev/null 2>&1 || useradd -m -s /bin/sh $user
uid=$(id -u $user)
home=$(getent passwd $user | cut -d: -f6)
mkdir -p /run/user/$uid && chown $user: /run/user/$uid && chmod 700 /run/user/$uid
as() { runuser -u $user -- env HOME="$home" XDG_RUNTIME_DIR=/run/user/$uid USER=$user "$@"; }
as sh -c 'mkdir -p ~/.config/containers && printf "[storage]\ndriver = \"overlay\"\n" > ~/.config/containers/storage.conf'

work=$(mktemp -d /tmp/builder-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp bin/builder "$work/builder"
hack/mkbase-context.sh "$work/base" >/dev/null
mkdir -p "$work/meta" "$work/run10"
cat > "$work/meta/Dockerfile" <<'D'
FROM localhost/busybox:latest
ENV A=1 B=2
LABEL bench=meta
WORKDIR /srv
CMD ["/bin/sh"]
D
{
  echo "FROM localhost/busybox:latest"
  for i in $(seq 1 10); do echo "RUN echo step $i > /tmp/step$i"; done
} > "$work/run10/Dockerfile"
chmod -R a+rX "$work"
mkdir -p "$work/results" && chown $user: "$work/results"
as "$work/builder" bud -q -t localhost/busybox:latest "$work/base" >/dev/null

builder_cmd() { echo "$work/builder bud -q -t localhost/bench-$1 $work/$1"; }
buildah_cmd() { echo "buildah --storage-driver=overlay bud --runtime=runc --network=host --layers=false --no-cache -q -t localhost/bench-$1 $work/$1"; }

declare -A med
IFS=, read -ra list <<< "$cases"
for c in "${list[@]}"; do
  for tool in builder buildah; do
    cmd=$(${tool}_cmd "$c")
    as hyperfine --style none --warmup 1 --runs "$repeat" --export-json "$work/results/$tool-$c.json" "$cmd" >/dev/null 2>&1 \
      || { echo "bench: $tool $c failed:"; as sh -c "$cmd"; exit 1; }
    med[$tool-$c]=$(jq -r '.results[0].median' "$work/results/$tool-$c.json")
  done
done

row() { printf '%-24s %12s %12s %10s\n' "$@"; }
echo
echo "builder bench — $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), median of $repeat runs"
row case builder buildah ratio
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
secs() { awk -v a="$1" 'BEGIN { printf "%.3fs", a }'; }
json="{\"machine\": {\"cores\": $(nproc), \"kernel\": \"$(uname -r)\", \"repeat\": $repeat}, \"cases\": {"
sep=""
for c in "${list[@]}"; do
  b=${med[builder-$c]} h=${med[buildah-$c]}
  row "$c" "$(secs "$b")" "$(secs "$h")" "$(ratio "$b" "$h")"
  json+="$sep\"$c\": {\"builder\": $b, \"buildah\": $h}"
  sep=", "
done
json+="}"
if [ -n "${med[builder-run10]:-}" ] && [ -n "${med[builder-meta]:-}" ]; then
  pb=$(awk -v r="${med[builder-run10]}" -v m="${med[builder-meta]}" 'BEGIN { printf "%.4f", (r - m) / 10 }')
  ph=$(awk -v r="${med[buildah-run10]}" -v m="${med[buildah-meta]}" 'BEGIN { printf "%.4f", (r - m) / 10 }')
  row "per-RUN overhead" "$(secs "$pb")" "$(secs "$ph")" "$(ratio "$pb" "$ph")"
  json+=", \"per_run_overhead\": {\"builder\": $pb, \"buildah\": $ph, \"ratio\": $(ratio "$pb" "$ph")}"
fi
json+="}"
echo "$json" | jq . > bench/results.json
echo "wrote bench/results.json"
