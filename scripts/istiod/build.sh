#!/usr/bin/env bash
# Builds istiod (pilot-discovery) from the Go module proxy into PREFIX/bin: a tool of
# the wrapper module beside this script, whose go.mod and go.sum pin every dependency
# (Istio's own go.mod has no replace directives, so requiring it is enough). A cold
# build takes ~15 minutes on 2 cores and ~2.3 GB of memory; scripts/setup.sh uses a
# prebuilt copy when it has one. PREFIX/bin appears complete or not at all.
# Usage: build.sh PREFIX
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
[ $# -eq 1 ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
prefix=$1

go=go
command -v go >/dev/null || go=/usr/local/go/bin/go
if ! command -v "$go" >/dev/null; then
  echo "istiod/build: the go command is needed to build istiod (install Go 1.24 or newer)" >&2
  exit 1
fi
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
work=$(mktemp -d "$prefix/.build.XXXXXX")
log=$(mktemp /tmp/ztunnel-istiod-build.XXXXXX.log)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "istiod/build: building pilot-discovery from istio.io/istio $ISTIO_MODULE_VERSION with" \
  "$("$go" env GOVERSION) (~15 min cold on 2 cores); log: $log"
start=$SECONDS
# Stamped as Istio's Makefile would, so "pilot-discovery version" names what it is.
v=istio.io/istio/pkg/version
ldflags="-s -w -X $v.buildVersion=$ISTIO_VERSION -X $v.buildGitRevision=${ISTIO_MODULE_VERSION##*-}"
ldflags+=" -X $v.buildTag=$ISTIO_MODULE_VERSION -X $v.buildStatus=Modified"
if ! env -C "$here" CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -ldflags "$ldflags" \
  -o "$work/pilot-discovery" istio.io/istio/pilot/cmd/pilot-discovery >>"$log" 2>&1; then
  echo "istiod/build: failed after $((SECONDS - start)) s; the end of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
echo "istiod/build: built pilot-discovery in $((SECONDS - start)) s"
mkdir -p "$work/bin"
mv "$work/pilot-discovery" "$work/bin/"
rm -rf "$prefix/bin"
mv "$work/bin" "$prefix/bin"
rm -f "$log"
