#!/usr/bin/env bash
# Checks that DIR holds the test harness binaries at the versions of versions.sh:
# kube (answering as each of KUBE_COMMANDS, through its symlinks and as its first
# argument), etcd and helm. Prints nothing on success; on failure says what is wrong
# and exits 1.
set -euo pipefail

. "$(dirname "$0")/versions.sh"
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
failed=0

# expect WANT CMD...: CMD must succeed and its output must contain WANT.
expect() {
  local want=$1 out
  shift
  if ! out=$("$@" 2>&1) || [[ $out != *"$want"* ]]; then
    echo "kube/verify: '$*' does not report $want:" >&2
    printf '%s\n' "$out" | head -5 | sed 's/^/  /' >&2
    failed=1
  fi
}

for f in kube etcd helm "${KUBE_COMMANDS[@]}"; do
  [ -x "$dir/$f" ] || { echo "kube/verify: $dir/$f is missing or not executable" >&2; exit 1; }
done
expect "Client Version: $KUBE_VERSION" "$dir/kubectl" version --client
expect "Client Version: $KUBE_VERSION" "$dir/kube" kubectl version --client
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  expect "Kubernetes $KUBE_VERSION" "$dir/$c" --version
done
expect "Kubernetes $KUBE_VERSION" "$dir/kube" kubelet --version
expect "etcd Version: ${ETCD_VERSION#v}" "$dir/etcd" --version
expect "$HELM_VERSION" "$dir/helm" version --short
# Without its Makefile's version stamps helm assumes Kubernetes 1.20 for "helm template"
# and lint, and refuses a chart that needs newer (ours: kubeVersion >=1.26).
chart=$(mktemp -d /tmp/ztunnel-helm-verify.XXXXXX)
trap 'rm -rf "$chart"' EXIT
mkdir -p "$chart/templates"
printf 'apiVersion: v2\nname: probe\nversion: 0.1.0\n' >"$chart/Chart.yaml"
printf '# {{ .Capabilities.KubeVersion.Version }}\n' >"$chart/templates/v.yaml"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
if ! out=$(HELM_CACHE_HOME=$chart/.h HELM_CONFIG_HOME=$chart/.h HELM_DATA_HOME=$chart/.h \
  "$dir/helm" template probe "$chart" 2>&1) || [[ $out != *"# v1.$minor."* ]]; then
  echo "kube/verify: helm's default Kubernetes version is not 1.$minor (built without its version stamps?):" >&2
  printf '%s\n' "$out" | grep -v '^---\|^# Source' | head -3 | sed 's/^/  /' >&2
  [ $failed = 1 ] || failed=2  # 2: only helm is wrong
fi
exit $failed
