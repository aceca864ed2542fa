"""A real istiod (pilot-discovery, built by scripts/setup.sh) as a process against the
harness's Kubernetes node, as ../shared/ISTIOD.md found it runs: Istio's CRDs applied,
ambient on, the node proxy's service account trusted to ask for its pods'
certificates. And the node process in istiod mode (XDS_ADDRESS), in the host netns as
a hostNetwork DaemonSet pod would run."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ambient import Mesh  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _istio_version() -> str:
    text = (REPO / "scripts/istiod/versions.sh").read_text()
    return re.search(r"^ISTIO_VERSION=(\S+)", text, re.M).group(1)


ISTIOD_DIR = Path(os.environ.get("ZTUNNEL_ISTIOD_DIR",
                                 f"/opt/ztunnel-deps/istiod-{_istio_version()}"))
PILOT = ISTIOD_DIR / "bin" / "pilot-discovery"
CRDS = ISTIOD_DIR / "crd-all.gen.yaml"
NODE_PROXY_NS = "istio-system"
NODE_PROXY_SA = "ztunnel"
CHART_NODE_PROXY = "ztunnel-system/ztunnel"  # the chart's node process, as chart.NAMESPACE installs it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The harness's polling wait (timeout, what it waited for, the log's tail on failure).
wait = Mesh.wait


class Istiod:
    """pilot-discovery with its state in a temporary directory; ports are free ones."""

    def __init__(self, kube):
        self.kube = kube
        self.dir = Path(tempfile.mkdtemp(prefix="istiod-", dir="/run"))
        self.http = free_port()
        self.grpc = free_port()
        self.secure = free_port()
        # Where the secure gRPC port (xDS and CA) listens: loopback for a node process in
        # the host netns; the pod bridge's host address for one in a pod.
        self.secure_host = "127.0.0.1"
        self.https = free_port()
        self.monitoring = free_port()
        self.ctrlz = free_port()
        self.proc = None
        self.logs: list[Path] = []
        (self.dir / "etc/istio/config").mkdir(parents=True)
        (self.dir / "etc/istio/config/mesh").write_text(
            "trustDomain: cluster.local\nrootNamespace: istio-system\n")

    def prepare_cluster(self) -> None:
        """Istio's CRDs, istio-system, and the node proxy's service account."""
        assert PILOT.exists(), f"{PILOT} is missing: scripts/setup.sh installs it"
        self.kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS),
                          timeout=120)
        for crd in ("authorizationpolicies.security.istio.io", "peerauthentications.security.istio.io"):
            self.kube.kubectl("wait", "--for", "condition=Established", f"crd/{crd}", "--timeout=60s")
        self.kube.kubectl("create", "namespace", NODE_PROXY_NS, check=False)
        self.kube.kubectl("create", "serviceaccount", NODE_PROXY_SA, "-n", NODE_PROXY_NS, check=False)

    def start(self) -> float:
        """Starts istiod and waits for /ready; returns the seconds it took."""
        log = self.dir / f"istiod-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, "PILOT_ENABLE_AMBIENT": "true", "POD_NAMESPACE": "istio-system",
               "POD_NAME": "istiod-local", "REVISION": "default",
               # This harness's node proxy, and the chart's (in its release namespace).
               "CA_TRUSTED_NODE_ACCOUNTS": f"{NODE_PROXY_NS}/{NODE_PROXY_SA},{CHART_NODE_PROXY}",
               "ISTIOD_CUSTOM_HOST": "localhost"}
        start = time.monotonic()
        self.proc = subprocess.Popen(
            [str(PILOT), "discovery", "--kubeconfig", str(self.kube.kubeconfig),
             "--domain", "cluster.local",
             "--httpAddr", f"127.0.0.1:{self.http}", "--grpcAddr", f"127.0.0.1:{self.grpc}",
             "--secureGRPCAddr", f"{self.secure_host}:{self.secure}",
             "--httpsAddr", f"127.0.0.1:{self.https}",
             "--monitoringAddr", f"127.0.0.1:{self.monitoring}",
             "--ctrlz_port", str(self.ctrlz), "--ctrlz_address", "127.0.0.1"],
            cwd=self.dir, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        wait(self.ready, 90, "istiod's /ready", self.log)
        return time.monotonic() - start

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def kill(self) -> None:
        """kill -9, as a crashed istiod."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def root_pem(self) -> str:
        """istiod's root, from the istio-ca-root-cert ConfigMap it publishes."""
        def published():
            status, obj = self.kube.api(
                "GET", f"/api/v1/namespaces/{NODE_PROXY_NS}/configmaps/istio-ca-root-cert")
            return status == 200 and "root-cert.pem" in obj.get("data", {})
        wait(published, 60, "the istio-ca-root-cert ConfigMap", self.log)
        return self.kube.api(
            "GET", f"/api/v1/namespaces/{NODE_PROXY_NS}/configmaps/istio-ca-root-cert")[1][
            "data"]["root-cert.pem"]

    @property
    def address(self) -> str:
        # istiod's serving certificate has DNS names only; "localhost" is one of them
        # with ISTIOD_CUSTOM_HOST=localhost.
        return f"https://localhost:{self.secure}"

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class NodeProxyIdentity:
    """The node proxy's own pod (a sleeping busybox on the node) and a token bound to
    it, as the kubelet projects one for a DaemonSet pod (audience istio-ca)."""

    def __init__(self, kube, directory: Path, name: str = "ztunnel-node"):
        self.kube = kube
        self.name = name
        kube.apply({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": NODE_PROXY_NS},
                    "spec": {"serviceAccountName": NODE_PROXY_SA,
                             "terminationGracePeriodSeconds": 1,
                             "containers": [{"name": "main", "image": kube.busybox_image,
                                             "imagePullPolicy": "Never",
                                             "command": ["sleep", "3600"]}]}})
        pod = kube.wait_pod_ready(NODE_PROXY_NS, name, timeout=90)
        self.uid = pod["metadata"]["uid"]
        self.ip = pod["status"]["podIP"]
        self.token_path = directory / "istio-token"
        self.refresh_token()

    def refresh_token(self) -> None:
        token = self.kube.kubectl(
            "create", "token", NODE_PROXY_SA, "-n", NODE_PROXY_NS, "--audience", "istio-ca",
            "--bound-object-kind", "Pod", "--bound-object-name", self.name,
            "--bound-object-uid", self.uid, "--duration", "2h").strip()
        self.token_path.write_text(token)

    def close(self) -> None:
        self.kube.kubectl("delete", "pod", self.name, "-n", NODE_PROXY_NS, "--wait=false",
                          check=False)


class HostZtunnel:
    """Our node process in the host netns, in istiod mode, on free ports."""

    def __init__(self, directory: Path, istiod: Istiod, ident: NodeProxyIdentity, node_name: str,
                 *extra: str, env: dict | None = None):
        from ztnet import ztunnel_bin  # noqa: E402 (integration/ is on sys.path)
        self.admin = free_port()
        self.metrics = free_port()
        self.readiness = free_port()
        self.log_path = directory / f"zt-{time.time_ns()}.log"
        root = directory / "root-cert.pem"
        root.write_text(istiod.root_pem())
        self.env = {**os.environ, "XDS_ADDRESS": istiod.address, "XDS_ROOT_CA": str(root),
                    "AUTH_TOKEN": str(ident.token_path), "POD_NAME": ident.name,
                    "POD_NAMESPACE": NODE_PROXY_NS, "INSTANCE_IP": ident.ip,
                    "NODE_NAME": node_name, **(env or {})}
        self.proc = subprocess.Popen(
            [ztunnel_bin(), "--admin-listen", f"127.0.0.1:{self.admin}",
             "--metrics-listen", f"127.0.0.1:{self.metrics}",
             "--readiness-listen", f"127.0.0.1:{self.readiness}",
             "--outbound-listen", f"127.0.0.1:{free_port()}",
             "--inbound-listen", f"127.0.0.1:{free_port()}",
             "--inbound-plaintext-listen", f"127.0.0.1:{free_port()}",
             "--log-level", os.environ.get("ZTUNNEL_KUBE_TEST_LOG_LEVEL", "info"), *extra],
            env=self.env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        wait(lambda: "ready:" in self.log() or self.proc.poll() is not None, 20,
             "the node process", self.log)
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def dump(self) -> dict:
        return json.loads(self.get(self.admin, "/config_dump")[1])

    def ready(self) -> bool:
        return self.get(self.readiness, "/healthz/ready")[0] == 200

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode
