#!/usr/bin/env bash
# Installs every Debian package the build, tests, demo and benchmarks need
# (DESIGN.md §5). Idempotent: prints nothing when everything is present.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  # libraries
  liburing-dev android-libboringssl-dev libnghttp2-dev libboost-context-dev
  libfmt-dev libcxxopts-dev prometheus-cpp-dev libyaml-cpp-dev
  libprotobuf-dev protobuf-compiler
  # tests
  catch2 python3-pytest python3-h2 python3-cryptography
  # network tools used by tests, demo and benchmarks
  iproute2 iptables iperf3 tcpdump tshark haproxy procps psmisc
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
