#!/usr/bin/env bash
# Regenerates go.mod and go.sum of the istiod wrapper module for the version in
# versions.sh (network: the Go module proxy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
go=go
command -v go >/dev/null || go=/usr/local/go/bin/go
cat >"$here/go.mod" <<MOD
// The wrapper module scripts/istiod/build.sh builds istiod from (see update-module.sh).
module ztunnel.dev/istiod-build

go 1.26.0

tool istio.io/istio/pilot/cmd/pilot-discovery

require istio.io/istio $ISTIO_MODULE_VERSION
MOD
rm -f "$here/go.sum"
env -C "$here" "$go" mod tidy
echo "istiod/update-module: go.mod and go.sum pinned for istio.io/istio $ISTIO_MODULE_VERSION"
