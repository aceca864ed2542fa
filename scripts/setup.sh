#!/usr/bin/env bash
# Installs every Debian package the build, tests, demo and benchmarks need
# (DESIGN.md §5), then builds BoringSSL from source (see install_boringssl).
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

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  # libraries
  liburing-dev libnghttp2-dev libboost-context-dev
  libfmt-dev libcxxopts-dev prometheus-cpp-dev libyaml-cpp-dev
  libprotobuf-dev protobuf-compiler
  # fuzzing: Debian's clang 14; -fsanitize=fuzzer needs the libFuzzer runtime, which
  # is only a Recommends of clang-14 (we install with --no-install-recommends)
  clang libclang-rt-14-dev
  # tests
  catch2 python3-pytest python3-h2 python3-cryptography python3-prometheus-client
  # benchmark plots
  python3-matplotlib
  # network tools used by tests, demo and benchmarks
  iproute2 iptables iperf3 tcpdump tshark haproxy procps psmisc
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
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
install_boringssl
install_fortio
