#!/usr/bin/env bash
# Builds the single-node Kubernetes test harness binaries from the Go module proxy
# into PREFIX/bin (versions in versions.sh):
#   kube   Kubernetes as one multi-call binary (k8s/main.go), and the symlinks
#          kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl -> kube
#   etcd   go.etcd.io/etcd/server/v3, a tool of the wrapper module etcd/
#   helm   helm.sh/helm/v3/cmd/helm
# k8s/ and etcd/ pin every dependency in their go.mod and go.sum (regenerate them with
# update-modules.sh). A cold build takes 15-30 minutes on 2 cores, ~1 GB of module cache
# and ~4 GB of Go build cache; scripts/setup.sh uses a prebuilt copy when it has one.
# PREFIX/bin appears complete or not at all. Usage: build.sh [--helm-only] PREFIX
# --helm-only rebuilds PREFIX/bin/helm alone (a prebuilt helm without the version
# stamps below: its "helm template" would claim Kubernetes 1.20).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
helm_only=0
if [ "${1:-}" = --helm-only ]; then
  helm_only=1
  shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--helm-only] PREFIX" >&2; exit 2; }
prefix=$1

go=go
command -v go >/dev/null || go=/usr/local/go/bin/go
if ! command -v "$go" >/dev/null; then
  echo "kube/build: the go command is needed to build Kubernetes $KUBE_VERSION (install Go 1.24 or newer)" >&2
  exit 1
fi

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
work=$(mktemp -d "$prefix/.build.XXXXXX")
chmod 755 "$work"
log=$(mktemp /tmp/ztunnel-kube-build.XXXXXX.log)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step NAME CMD...: runs CMD with its output in $log; says how long it took, or
# shows the end of the log and exits if it failed.
step() {
  local name=$1 start=$SECONDS
  shift
  echo "kube/build: building $name"
  if ! "$@" >>"$log" 2>&1; then
    echo "kube/build: building $name failed after $((SECONDS - start)) s; the end of $log:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
  echo "kube/build: built $name in $((SECONDS - start)) s"
}

# What the upstream build (hack/lib/version.sh) stamps, so that /version and
# "kubectl version" report $KUBE_VERSION instead of v0.0.0-master.
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
done

start=$SECONDS
export CGO_ENABLED=0
if [ $helm_only = 0 ]; then
echo "kube/build: building Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION and helm $HELM_VERSION" \
  "into $prefix/bin with $("$go" env GOVERSION) (a cold build takes 15-30 min on 2 cores); log: $log"
step "etcd $ETCD_VERSION" \
  env -C "$here/etcd" "$go" build -mod=readonly -trimpath -ldflags "-s -w" \
  -o "$work/etcd" go.etcd.io/etcd/server/v3
step "kube $KUBE_VERSION (${KUBE_COMMANDS[*]})" \
  env -C "$here/k8s" "$go" build -mod=readonly -trimpath -ldflags "$kube_ldflags" \
  -o "$work/kube" .
fi
# helm has no replace directives: "go install" at its tag works. The ldflags are its
# Makefile's: without them "helm version" says v3.19 and the default Kubernetes version
# for "helm template" and lint is 1.20 instead of that of the client-go it is built with.
helm_mod=$(env -C / "$go" mod download -json "helm.sh/helm/v3@$HELM_VERSION" 2>>"$log" |
  sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p') || true
helm_k8s_minor=$(sed -n 's/^\tk8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${helm_mod:-/dev/null}")
if [ -z "$helm_k8s_minor" ]; then
  echo "kube/build: cannot read helm $HELM_VERSION's go.mod from the Go module proxy; the end of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$helm_k8s_minor"
done
step "helm $HELM_VERSION" \
  env -C / GOBIN="$work" "$go" install -trimpath -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
if [ $helm_only = 1 ]; then
  mkdir -p "$prefix/bin"
  mv "$work/helm" "$prefix/bin/helm.new"
  mv "$prefix/bin/helm.new" "$prefix/bin/helm"
  rm -f "$log"
  echo "kube/build: helm $HELM_VERSION rebuilt in $((SECONDS - start)) s"
  exit 0
fi
for c in "${KUBE_COMMANDS[@]}"; do
  ln -s kube "$work/$c"
done
"$here/verify.sh" "$work"
rm -rf "$prefix/bin"
mv "$work" "$prefix/bin"
rm -f "$log"
echo "kube/build: done in $((SECONDS - start)) s: $(cd "$prefix/bin" && echo *)"
