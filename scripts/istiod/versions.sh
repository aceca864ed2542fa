# The istiod (pilot-discovery) the control-plane tests run against (sourced by
# scripts/setup.sh and scripts/istiod/*.sh): Istio 1.31-dev, the version
# /work/shared/ISTIOD.md verified with Istio's own ztunnel. After changing it, run
# scripts/istiod/update-module.sh.
ISTIO_MODULE_VERSION=v0.0.0-20260827124520-eed52ebb66ad
# What `pilot-discovery version` reports (build.sh stamps it).
ISTIO_VERSION=1.31-dev-eed52ebb66ad
# The prebuilt copy in the shared cache, and its sha256.
ISTIOD_CACHE_NAME=istiod-pilot-discovery-1.31-eed52ebb66ad.tar.zst
ISTIOD_CACHE_SHA256=5868e66c22985d67bc35b240f6f18340e927a992a84ae6411d23b5a6da6785fd
