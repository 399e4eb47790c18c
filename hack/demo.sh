#!/usr/bin/env bash
# demo.sh BIN TAG: builds a busybox base image from Debian's busybox-static,
# then testdata/dockerfiles/demo on top of it, into the default local store.
set -euo pipefail
bin=$1 tag=$2
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
"$(dirname "$0")/mkbase-context.sh" "$base"
"$bin" bud -q -t localhost/busybox:latest "$base" >/dev/null
"$bin" bud -t "$tag" testdata/dockerfiles/demo
"$bin" images
