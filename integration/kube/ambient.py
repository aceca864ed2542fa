"""The mesh on the harness's Kubernetes node, for tests and benchmarks: the Go node
agent (build/kube/ztunnel-cni) in the host netns, as a hostNetwork DaemonSet pod would
run, and the node process in a network namespace of its own, reaching each pod through
the netns descriptor ZDS hands it."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import ztnet  # noqa: E402

CNI_BIN = os.environ.get("ZTUNNEL_CNI_BIN", str(REPO / "build/kube/ztunnel-cni"))
AGENT_BIN = os.environ.get("ZTUNNEL_AGENT_BIN", str(REPO / "build/ztunnel/agent/ztunnel-agent"))
CRD = REPO / "helm/ztunnel/crds/authorizationpolicies.security.istio.io.yaml"
PORT = 8080
MARKER = "ZTMARKER-plaintext-must-not-appear"
POD_SUBNET = "10.244.0.0/24"  # node.py's host-local range
BRIDGE_IP = "10.244.0.1"  # its bridge, the host's address in that range


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mesh:
    """The node agent (host netns, like a hostNetwork DaemonSet pod) and the node
    process (its own netns), both on the harness's node."""

    def __init__(self, kube):
        self.kube = kube
        self.dir = Path(tempfile.mkdtemp(prefix="ztk-", dir="/run"))
        self.zds = self.dir / "zds.sock"
        self.control = self.dir / "agent.sock"
        self.cni_socket = self.dir / "cni.sock"
        self.config = self.dir / "mesh.json"
        self.health = free_port()
        self.topo = ztnet.Topology("k8s")
        self.node_ns = self.topo.netns("node")
        self.agent = None
        self.node = None
        self.agent_logs: list[Path] = []
        self.node_logs: list[Path] = []

    # --- the agent ---------------------------------------------------------------
    def start_agent(self, mesh_config: bool = True) -> None:
        """The Go agent; without mesh_config it writes no config (istiod serves it)."""
        log = self.dir / f"agent-{len(self.agent_logs)}.log"
        self.agent_logs.append(log)
        self.agent = subprocess.Popen(
            [CNI_BIN, "agent", "--kubeconfig", str(self.kube.kubeconfig),
             "--node-name", self.kube.node_name, "--rules-agent", AGENT_BIN,
             "--zds-socket", str(self.zds), "--control-socket", str(self.control),
             "--cni-socket", str(self.cni_socket), "--cni-bin-dir", str(self.kube.cni_bin_dir),
             "--cni-conf-dir", str(self.kube.cni_conf_dir), "--mesh-config", str(self.config) if mesh_config else "",
             "--health-listen", f"127.0.0.1:{self.health}", "--unenroll-grace", "5s",
             "-v", "2"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.topo.processes.append(self.agent)
        self.wait(lambda: self.agent_ready(), 60, "the agent's readiness", self.agent_log)

    def agent_ready(self) -> bool:
        assert self.agent.poll() is None, self.agent_log()
        try:
            with socket.create_connection(("127.0.0.1", self.health), timeout=1) as s:
                s.sendall(b"GET /healthz/ready HTTP/1.0\r\n\r\n")
                return s.recv(100).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def agent_log(self) -> str:
        return "".join(p.read_text() for p in self.agent_logs if p.exists())

    def kill_agent(self) -> None:
        """kill -9 of the Go agent; its ztunnel-agent child dies with it (PDEATHSIG)."""
        os.killpg(self.agent.pid, signal.SIGKILL)
        self.agent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while subprocess.run(["pgrep", "-f", f"{AGENT_BIN} serve.*{self.control}"],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "ztunnel-agent outlived its parent"
            time.sleep(0.05)

    # --- the node process ----------------------------------------------------------
    def start_node(self) -> None:
        log = self.dir / f"zt-{len(self.node_logs)}.log"
        self.node_logs.append(log)
        self.node = ztnet.Ztunnel(
            self.node_ns, log, "--inpod", "--inpod-uds", str(self.zds), "--local-config",
            str(self.config), "--ca-dir", str(self.dir / "ca"), "--ca-generate",
            "--node-name", self.kube.node_name, "--drain-timeout", "3s",
            "--log-level", os.environ.get("ZTUNNEL_KUBE_TEST_LOG_LEVEL", "info"))
        self.topo.processes.append(self.node.proc)

    def node_log(self) -> str:
        return "".join(p.read_text() for p in self.node_logs if p.exists())

    def wait_node_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> str:
        def seen():
            return re.search(pattern, self.node_log()[since:]) is not None
        self.wait(seen, timeout, f"/{pattern}/ in the node log", self.node_log)
        return self.node_log()

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def wait(cond, timeout, what, log=None):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}" +
                                     (f"\n{log()[-6000:]}" if log else ""))
            time.sleep(0.05)

    def config_workload(self, ns: str, name: str) -> dict | None:
        try:
            cfg = json.loads(self.config.read_text())
        except (OSError, ValueError):
            return None
        for w in cfg["workloads"]:
            if w["namespace"] == ns and w["name"] == name:
                return w
        return None

    def enrolled(self) -> str:
        return subprocess.run([AGENT_BIN, "list", "--control-socket", str(self.control)],
                              capture_output=True, text=True, timeout=30).stdout

    def close(self) -> None:
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)  # unchains the CNI plugin
            try:
                self.agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)
        if self.node and self.node.proc.poll() is None:
            self.node.stop()
        self.topo.close()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


class Capture:
    """tcpdump on every host interface for the pod subnet: each pod's veth end sees
    its packets (the bridge device itself sees only frames it floods or terminates,
    not those it forwards between two pods)."""

    live: list["Capture"] = []  # killed by the `no_stray_captures` fixture

    def __init__(self, kube, path: Path):
        self.path = path
        Capture.live.append(self)
        # --immediate-mode: without it packets wait in the kernel ring for up to 1 s,
        # and those still there at SIGINT are never written.
        # -B: a larger kernel buffer (KiB); a segment lost there once hid a ServerHello.
        self.proc = subprocess.Popen(["tcpdump", "-i", "any", "--immediate-mode", "-U", "-B", "8192",
                                      "-w", str(path), "-s", "0",
                                      f"tcp and net {POD_SUBNET}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on" once its capture is open; packets before that
        # are not seen.
        # "listening on" comes before the filter is on every interface: knock on the
        # bridge's own address (a RST, over lo) until a packet is in the file.
        deadline = time.monotonic() + 10
        while not path.exists() or path.stat().st_size <= 24:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            assert time.monotonic() < deadline, "tcpdump captured nothing"
            with socket.socket() as s:
                s.settimeout(0.2)
                try:
                    s.connect((BRIDGE_IP, 1))
                except OSError:
                    pass
            time.sleep(0.1)

    def stop(self) -> bytes:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        # "N packets dropped by kernel": a capture that lost packets says so.
        self.summary = self.proc.stderr.read().decode(errors="replace")
        Capture.live.remove(self)
        return self.path.read_bytes()

    def tls_versions(self) -> set[str]:
        out = subprocess.run(["tshark", "-r", str(self.path), "-d", "tcp.port==15008,tls",
                              "-Y", "tls.handshake.type==2", "-T", "fields", "-e",
                              "tls.handshake.extensions.supported_version"],
                             capture_output=True, text=True).stdout
        return {v for v in out.split() if v}


def pod(kube, name, ns, command, labels=None, env=None):
    container = {"name": "main", "image": kube.busybox_image, "imagePullPolicy": "Never",
                 "command": command,
                 "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}


def echo_server(kube, name, ns, labels=None):
    # Not busybox's `nc -ll -e cat`: its listen backlog of one overflows under a burst
    # of connections, and the drops look like the mesh's (echo_server.c).
    return pod(kube, name, ns, ["/bin/echo-server", str(PORT)], labels)


def label_namespace(kube, ns, value):
    arg = "istio.io/dataplane-mode-" if value is None else f"istio.io/dataplane-mode={value}"
    kube.kubectl("label", "namespace", ns, arg, "--overwrite")


def send_from(kube, ns, pod_name, ip, payload=MARKER, timeout=20) -> str:
    """The client pod sends `payload` to ip:PORT and prints what comes back."""
    return kube.exec(ns, pod_name, f"echo {payload} | nc -w 3 {ip} {PORT}", check=False,
                     timeout=timeout)
