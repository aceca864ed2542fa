#!/usr/bin/env bash
# Installs every Debian package the build, tests, demo and benchmarks need
# (DESIGN.md §5), then builds BoringSSL from source (see install_boringssl), fortio,
# and the single-node Kubernetes test harness binaries (see install_kube).
# Idempotent: prints nothing when everything is present.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

# BoringSSL: Debian's android-libboringssl build has no P-256 assembly and no VAES
# AES-GCM, which made a TLS handshake ~3x and bulk encryption ~3.5x slower than
# upstream BoringSSL on this machine (docs/ARCHITECTURE.md, "BoringSSL"). We build
# upstream BoringSSL, as vendored by the boring-sys crate (pinned in
# scripts/boringssl/Cargo.lock), into a versioned prefix once per machine.
# The prefix names the crate version and our build revision (2: one section per
# function, so the linker's --gc-sections drops the unused code; see CMakeLists.txt).
BORINGSSL_CRATE_VERSION=5.4.0
BORINGSSL_BUILD_REVISION=2
BORINGSSL_PREFIX=${ZTUNNEL_DEPS_DIR:-/opt/ztunnel-deps}/boringssl-${BORINGSSL_CRATE_VERSION}-${BORINGSSL_BUILD_REVISION}

install_boringssl() {
  [ -f "$BORINGSSL_PREFIX/lib/libssl.a" ] && [ -f "$BORINGSSL_PREFIX/lib/libcrypto.a" ] && return 0
  if ! command -v cargo >/dev/null; then
    echo "setup: cargo is needed to fetch BoringSSL's source from crates.io (install Rust with rustup)" >&2
    exit 1
  fi
  echo "setup: building BoringSSL (boring-sys ${BORINGSSL_CRATE_VERSION}) into $BORINGSSL_PREFIX"
  cargo fetch --locked --quiet --manifest-path "$repo/scripts/boringssl/Cargo.toml"
  local registry="${CARGO_HOME:-$HOME/.cargo}/registry/src" src=""
  for d in "$registry"/*/boring-sys-"$BORINGSSL_CRATE_VERSION"/deps/boringssl; do
    [ -f "$d/CMakeLists.txt" ] && src=$d
  done
  if [ -z "$src" ]; then
    echo "setup: boring-sys ${BORINGSSL_CRATE_VERSION} was fetched but its deps/boringssl is not under $registry" >&2
    exit 1
  fi
  local build
  build=$(mktemp -d /tmp/ztunnel-boringssl.XXXXXX)
  trap 'rm -rf "$build"' RETURN
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_TESTING=OFF \
    -DCMAKE_C_FLAGS="-ffunction-sections -fdata-sections" \
    -DCMAKE_CXX_FLAGS="-ffunction-sections -fdata-sections" >"$build/configure.log"
  cmake --build "$build" -j "${JOBS:-2}" --target crypto ssl >"$build/build.log" || {
    tail -20 "$build/build.log" >&2
    exit 1
  }
  # Install atomically: a half-built prefix must never look complete.
  local staging="$BORINGSSL_PREFIX.tmp.$$"
  rm -rf "$staging"
  mkdir -p "$staging/lib"
  cp -r "$src/include" "$staging/include"
  cp "$build/libcrypto.a" "$build/libssl.a" "$staging/lib/"
  rm -rf "$BORINGSSL_PREFIX"
  mv "$staging" "$BORINGSSL_PREFIX"
  echo "setup: BoringSSL installed"
}

# fortio (Istio's load generator, DESIGN.md §5) for the mesh benchmark, built from the
# Go module proxy. v1.66.5: newer releases need grol.io/grol, which the proxy refuses.
FORTIO_VERSION=v1.66.5
FORTIO_BIN=${ZTUNNEL_DEPS_DIR:-/opt/ztunnel-deps}/fortio-${FORTIO_VERSION}/fortio

install_fortio() {
  [ -x "$FORTIO_BIN" ] && return 0
  local go=go
  command -v go >/dev/null || go=/usr/local/go/bin/go
  if ! command -v "$go" >/dev/null; then
    echo "setup: the go command is needed to build fortio $FORTIO_VERSION (install Go 1.22 or newer)" >&2
    exit 1
  fi
  echo "setup: building fortio $FORTIO_VERSION into $(dirname "$FORTIO_BIN")"
  local staging
  staging=$(mktemp -d /tmp/ztunnel-fortio.XXXXXX)
  trap 'rm -rf "$staging"' RETURN
  GOBIN=$staging "$go" install "fortio.org/fortio@$FORTIO_VERSION" || {
    echo "setup: building fortio $FORTIO_VERSION failed (see above)" >&2
    exit 1
  }
  mkdir -p "$(dirname "$FORTIO_BIN")"
  mv "$staging/fortio" "$FORTIO_BIN.tmp.$$" && mv "$FORTIO_BIN.tmp.$$" "$FORTIO_BIN"
}

# Kubernetes for the single-node test harness (/work/shared/KUBERNETES.md): one
# multi-call binary kube (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet and kubectl are symlinks to it), etcd and helm, at the versions of
# scripts/kube/versions.sh. They are built from the Go module proxy by
# scripts/kube/build.sh (15-30 min cold on 2 cores); a prebuilt archive of the same
# three binaries in the shared cache is used instead when its sha256 matches.
. "$repo/scripts/kube/versions.sh"
KUBE_PREFIX=${ZTUNNEL_DEPS_DIR:-/opt/ztunnel-deps}/kube-${KUBE_VERSION#v}
KUBE_CACHE=${ZTUNNEL_SHARED_CACHE:-$repo/../shared/cache}/k8s-bin-${KUBE_VERSION#v}.tar.zst
KUBE_CACHE_SHA256=c7b273365e825fcebab045b2b35ad3530495282ca09341a175f39b2866a94a33

kube_installed() {
  local f
  for f in kube etcd helm "${KUBE_COMMANDS[@]}"; do
    [ -x "$KUBE_PREFIX/bin/$f" ] || return 1
  done
}

install_kube() {
  # .verified: verify.sh passed on this prefix (a prefix unpacked before helm's check
  # existed is checked once, and its helm rebuilt if it lacks the version stamps).
  kube_installed && [ -f "$KUBE_PREFIX/.verified" ] && return 0
  if kube_installed; then
    local rc=0
    "$repo/scripts/kube/verify.sh" "$KUBE_PREFIX/bin" 2>/dev/null || rc=$?
    if [ $rc = 2 ]; then
      echo "setup: the installed helm assumes Kubernetes 1.20; rebuilding helm $HELM_VERSION"
      "$repo/scripts/kube/build.sh" --helm-only "$KUBE_PREFIX" || exit 1
      "$repo/scripts/kube/verify.sh" "$KUBE_PREFIX/bin" && rc=0
    fi
    if [ $rc = 0 ]; then
      touch "$KUBE_PREFIX/.verified"
      return 0
    fi
    echo "setup: $KUBE_PREFIX is not what scripts/kube/versions.sh names; installing it again"
  fi
  # One install at a time: a second setup run waits for the first's build.
  mkdir -p "$(dirname "$KUBE_PREFIX")"
  exec 9>"$KUBE_PREFIX.lock"
  flock 9
  if kube_installed; then
    exec 9>&-
    return 0
  fi
  # Install atomically: a half-built prefix must never look complete.
  local staging="$KUBE_PREFIX.tmp.$$"
  rm -rf "$staging"
  trap 'rm -rf "$staging"' RETURN
  if [ -f "$KUBE_CACHE" ] &&
    [ "$(sha256sum <"$KUBE_CACHE" | cut -d' ' -f1)" = "$KUBE_CACHE_SHA256" ]; then
    echo "setup: unpacking Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION and helm $HELM_VERSION from $KUBE_CACHE into $KUBE_PREFIX"
    mkdir -p "$staging/bin"
    zstd -dcq "$KUBE_CACHE" | tar -C "$staging/bin" --no-same-owner -xf - kube etcd helm || {
      rm -rf "$staging"
      echo "setup: unpacking $KUBE_CACHE failed" >&2
      exit 1
    }
    local c
    for c in "${KUBE_COMMANDS[@]}"; do
      ln -s kube "$staging/bin/$c"
    done
  else
    [ ! -f "$KUBE_CACHE" ] ||
      echo "setup: $KUBE_CACHE does not have sha256 $KUBE_CACHE_SHA256; building instead"
    "$repo/scripts/kube/build.sh" "$staging" || { rm -rf "$staging"; exit 1; }
  fi
  local rc=0
  "$repo/scripts/kube/verify.sh" "$staging/bin" 2>/dev/null || rc=$?
  if [ $rc = 2 ]; then
    # A prebuilt helm without its version stamps: build helm alone (a few minutes).
    echo "setup: the prebuilt helm assumes Kubernetes 1.20; rebuilding helm $HELM_VERSION"
    "$repo/scripts/kube/build.sh" --helm-only "$staging" || { rm -rf "$staging"; exit 1; }
  fi
  "$repo/scripts/kube/verify.sh" "$staging/bin" || {
    rm -rf "$staging"
    echo "setup: the Kubernetes binaries are not the expected versions (see above)" >&2
    exit 1
  }
  touch "$staging/.verified"
  rm -rf "$KUBE_PREFIX"
  mv "$staging" "$KUBE_PREFIX"
  exec 9>&-
  echo "setup: Kubernetes binaries installed in $KUBE_PREFIX/bin"
}

# istiod (pilot-discovery) for the Istio control-plane tests (/work/shared/ISTIOD.md),
# with Istio's CRDs from the same module: built from the Go module proxy by
# scripts/istiod/build.sh (~15 min cold), or unpacked from the shared cache when its
# sha256 matches.
. "$repo/scripts/istiod/versions.sh"
ISTIOD_PREFIX=${ZTUNNEL_DEPS_DIR:-/opt/ztunnel-deps}/istiod-$ISTIO_VERSION
ISTIOD_CACHE=${ZTUNNEL_SHARED_CACHE:-$repo/../shared/cache}/$ISTIOD_CACHE_NAME

istiod_installed() {
  [ -x "$ISTIOD_PREFIX/bin/pilot-discovery" ] && [ -s "$ISTIOD_PREFIX/crd-all.gen.yaml" ]
}

install_istiod() {
  istiod_installed && return 0
  mkdir -p "$(dirname "$ISTIOD_PREFIX")"
  exec 9>"$ISTIOD_PREFIX.lock"
  flock 9
  if istiod_installed; then
    exec 9>&-
    return 0
  fi
  local staging="$ISTIOD_PREFIX.tmp.$$" go=go
  command -v go >/dev/null || go=/usr/local/go/bin/go
  rm -rf "$staging"
  trap 'rm -rf "$staging"' RETURN
  if [ -f "$ISTIOD_CACHE" ] &&
    [ "$(sha256sum <"$ISTIOD_CACHE" | cut -d' ' -f1)" = "$ISTIOD_CACHE_SHA256" ]; then
    echo "setup: unpacking istiod $ISTIO_VERSION from $ISTIOD_CACHE into $ISTIOD_PREFIX"
    mkdir -p "$staging/bin"
    zstd -dcq "$ISTIOD_CACHE" | tar -C "$staging/bin" --no-same-owner -xf - pilot-discovery || {
      rm -rf "$staging"
      echo "setup: unpacking $ISTIOD_CACHE failed" >&2
      exit 1
    }
  else
    [ ! -f "$ISTIOD_CACHE" ] ||
      echo "setup: $ISTIOD_CACHE does not have sha256 $ISTIOD_CACHE_SHA256; building instead"
    "$repo/scripts/istiod/build.sh" "$staging" || { rm -rf "$staging"; exit 1; }
  fi
  # Istio's CRDs, from the module the binary was built from.
  local module
  module=$(env -C "$repo/scripts/istiod" "$go" mod download -json "istio.io/istio@$ISTIO_MODULE_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  if [ -z "$module" ] || ! cp "$module/manifests/charts/base/files/crd-all.gen.yaml" "$staging/"; then
    rm -rf "$staging"
    echo "setup: cannot get Istio's CRDs from istio.io/istio@$ISTIO_MODULE_VERSION (Go module proxy)" >&2
    exit 1
  fi
  chmod u+w "$staging/crd-all.gen.yaml"
  local version
  version=$("$staging/bin/pilot-discovery" version 2>/dev/null) || true
  if [[ "$version" != *"Version:\"$ISTIO_VERSION\""* ]]; then
    rm -rf "$staging"
    echo "setup: pilot-discovery is not istiod $ISTIO_VERSION: ${version:-it does not run}" >&2
    exit 1
  fi
  rm -rf "$ISTIOD_PREFIX"
  mv "$staging" "$ISTIOD_PREFIX"
  exec 9>&-
  echo "setup: istiod $ISTIO_VERSION installed in $ISTIOD_PREFIX"
}

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  # libraries
  liburing-dev libnghttp2-dev libboost-context-dev
  libfmt-dev libcxxopts-dev prometheus-cpp-dev libyaml-cpp-dev nlohmann-json3-dev
  libprotobuf-dev protobuf-compiler
  # fuzzing: Debian's clang 14; -fsanitize=fuzzer needs the libFuzzer runtime, which
  # is only a Recommends of clang-14 (we install with --no-install-recommends)
  clang libclang-rt-14-dev
  # tests
  catch2 python3-pytest python3-yaml python3-h2 python3-cryptography python3-prometheus-client
  # benchmark plots
  python3-matplotlib
  # network tools used by tests, demo and benchmarks
  iproute2 iptables iperf3 tcpdump tshark haproxy procps psmisc
  # the single-node Kubernetes test harness: container runtime, CNI plugins (bridge,
  # host-local, loopback in /usr/lib/cni), busybox for test images, what kubelet
  # needs, and zstd to unpack the prebuilt binaries (see install_kube)
  containerd runc containernetworking-plugins busybox-static conntrack socat zstd
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  install_boringssl
  install_fortio
  install_kube
  install_istiod
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq >/dev/null
# Install without starting services (containerd's postinst would start its systemd
# unit): a policy-rc.d that denies every action, removed afterwards, also on failure.
# One that is already there (container images have one) is left as it is.
policy_rc_d=/usr/sbin/policy-rc.d
if [ ! -e "$policy_rc_d" ]; then
  trap 'rm -f "$policy_rc_d"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  printf '#!/bin/sh\n# scripts/setup.sh: start no service while installing packages\nexit 101\n' >"$policy_rc_d"
  chmod 755 "$policy_rc_d"
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ "$(trap -p EXIT)" ]; then
  rm -f "$policy_rc_d"
  trap - EXIT INT TERM
fi
echo "setup: done"
install_boringssl
install_fortio
install_kube
install_istiod
