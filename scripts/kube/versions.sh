# Versions of the single-node Kubernetes test harness binaries (sourced by
# scripts/setup.sh and scripts/kube/*.sh). Kubernetes 1.34, not 1.35+: kubelet >= 1.35
# refuses cgroup v1 by default, and Debian bookworm's containerd is 1.6.
# After changing KUBE_VERSION or ETCD_VERSION, run scripts/kube/update-modules.sh.
KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.13
HELM_VERSION=v3.19.0
# The names kube (the multi-call Kubernetes binary) answers to; each is a symlink to it.
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
