"""A simulated two-node ambient cluster built from network namespaces (DESIGN §6).

    pod a1 ─┐                      switch netns                      ┌─ pod b1
    pod a2 ─┼─ node-a ── uplink ── bridge ztbr0 ── uplink ── node-b ─┼─ pod b2
    pod a3 ─┘  10.90.0.1                                  10.90.0.2  └─ pod b3
   10.90.1.1x (pods of node-a)                    (pods of node-b) 10.90.2.1x

- Every box is a network namespace made by `ztnet.Topology` (names zt-<tag>-<pid>-<role>,
  removed with everything in them at close, on exceptions, SIGTERM and Ctrl-C): nothing
  is created in the root namespace, the bridge lives in the "switch" namespace.
- A pod has its address as a /32 on a veth to its node, a default route via the node's
  gateway address (10.90.<n>.1, on every pod-facing veth of the node); the node routes
  each pod's /32 to its veth and the other node's pod range via the other node's bridge
  address, and forwards (ip_forward=1).
- Each node runs one `ztunnel --inpod` process (its own netns, its own log) and one
  `ztunnel-agent serve` (the istio-cni role: real capture rules in the pods, real ZDS).
  Both node processes share one CA: node-a's first start generates it (--ca-generate),
  node-b and every later start load it.
- The local config (Istio's LOCAL_XDS_PATH format) is generated from the pods: every mesh
  pod is an HBONE workload; service `echo.shop.svc.cluster.local` has VIP
  10.96.0.10:80 -> 8080 with endpoints a2 (node-a) and b2 (node-b); policies are passed
  in as YAML text. Pod a3 is out of the mesh: not enrolled, not in the config.

Usable from pytest (`Cluster(topo, tmp_path, policies_yaml=...)`) and from scripts
(`with Cluster() as c:` makes its own Topology and temporary directory; `python3
cluster.py --hold` builds one and keeps it up until Ctrl-C). Start-up takes about a second.

The helpers, in short:
  c.pod("a1") / c.node("node-a") / c.node("a1")      lookups (a pod name gives its node)
  c.start_sink("b1", 8080); c.sink_log("b1")         sink.py with a JSON line per connection
  c.send("a1", "b1" | ip, port, nbytes, pattern=)   send.py's JSON (sha256 both sides)
  c.spawn_send(...); c.probe("a1", "b1")            background send; refused-or-not probe
  with c.capture("node-a") as pcap: ...             tcpdump on the node's bridge link
  tls_handshakes(pcap), read_pcap(pcap)             what crossed the wire (no tshark needed)
  node.log(); node.mark(); node.wait_log(text)      the node process's log
  node.access("complete", direction="inbound")      parsed access records (text or JSON)
  node.stop() / node.kill() / node.start()          SIGTERM, kill -9, start (new log file)
  node.http("/config_dump") / node.http("/metrics", port=15020)   (status, body) from the
                                                    node's netns; http_request(ns, ...) from any
  c.write_config(text); c.set_policies(yaml)        atomic rewrite; the nodes reload it
  c.enroll("a1") / c.unenroll("a1")                 through the node's agent CLI
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import ztnet

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "tools"
PY = sys.executable or "python3"

TRUST_DOMAIN = "cluster.local"
BRIDGE_NET = "10.90.0"      # node uplinks: 10.90.0.<n>/24 on the bridge
SERVICE_VIP = "10.96.0.10"
SERVICE_PORT = 80
TARGET_PORT = 8080
SERVICE_NAME, SERVICE_NS = "echo", "shop"
SERVICE_HOST = f"{SERVICE_NAME}.{SERVICE_NS}.svc.cluster.local"
SERVICE_KEY = f"{SERVICE_NS}/{SERVICE_HOST}"
CLUSTER_ID = "cluster1"
# A policy that refuses shop/web (pod a1's account); attach it to a pod with
# workload_policies={"<pod>": ["backend/deny-web"]} (tests, demo).
DENY_WEB = """\
policies:
- name: deny-web
  namespace: backend
  scope: WorkloadSelector
  action: Deny
  rules:
  - - - serviceAccounts: [{namespace: shop, serviceAccount: web}]
"""


def agent_bin() -> str:
    path = os.environ.get("ZTUNNEL_AGENT_BIN",
                          str(ztnet.REPO / "build" / "ztunnel" / "agent" / "ztunnel-agent"))
    if not Path(path).exists():
        raise FileNotFoundError(f"ztunnel-agent binary not found at {path}: run `make build` first")
    return path


@dataclass
class Pod:
    """One pod: a network namespace behind its node, and (if `mesh`) a workload."""
    name: str                 # short name, also the netns role: a1, b2, ...
    node: str                 # node-a / node-b
    ip: str
    namespace: str            # Kubernetes namespace
    service_account: str
    mesh: bool = True         # enrolled and in the config; False: out of the mesh
    services: dict = field(default_factory=dict)   # "ns/hostname" -> {port: target}
    policies: list = field(default_factory=list)   # authorizationPolicies ("ns/name")
    ns: ztnet.Netns | None = None
    veth: str = ""            # the pod's end of its link
    enrolled: bool = False
    sidecar: ztnet.Ztunnel | None = None  # its dedicated proxy (mode="sidecar")

    @property
    def uid(self) -> str:
        """The workload uid in the local config (Istio's format)."""
        return f"{CLUSTER_ID}//v1/Pod/{self.namespace}/{self.name}"

    @property
    def zds_uid(self) -> str:
        """The pod UID the agent enrolls (a Kubernetes UUID, stable per name)."""
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.namespace}.{self.name}.pod"))

    @property
    def identity(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.ns.name}"


def default_pods() -> list[Pod]:
    """Three pods per node. a2 and b2 are the echo service's endpoints; a3 is out of the
    mesh; b1 and b3 share a namespace but not a service account."""
    svc = {SERVICE_KEY: {SERVICE_PORT: TARGET_PORT}}
    return [
        Pod("a1", "node-a", "10.90.1.11", "shop", "web"),
        Pod("a2", "node-a", "10.90.1.12", "shop", "cart", services=dict(svc)),
        Pod("a3", "node-a", "10.90.1.13", "legacy", "default", mesh=False),
        Pod("b1", "node-b", "10.90.2.11", "backend", "api"),
        Pod("b2", "node-b", "10.90.2.12", "shop", "cart", services=dict(svc)),
        Pod("b3", "node-b", "10.90.2.13", "backend", "audit"),
    ]


_HTTP_CLIENT = """
import json, sys, urllib.request, urllib.error
url, method, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
try:
    r = urllib.request.urlopen(req, timeout=timeout)
    out = [r.status, r.read().decode(errors="replace")]
except urllib.error.HTTPError as e:
    out = [e.code, e.read().decode(errors="replace")]
except Exception as e:  # refused, reset, timeout: no HTTP answer
    out = [0, f"{type(e).__name__}: {e}"]
print(json.dumps(out))
"""


def http_request(ns: ztnet.Netns, host: str, port: int, path: str, method: str = "GET",
                 timeout: float = 5.0) -> tuple[int, str]:
    """One HTTP request (urllib) from inside `ns` (a node's or a pod's netns): (status,
    body); status 0 when no HTTP answer came (refused, reset, timeout), body says why."""
    out = ns.run(PY, "-c", _HTTP_CLIENT, f"http://{host}:{port}{path}", method,
                 str(timeout)).stdout
    code, body = json.loads(out.strip().splitlines()[-1])
    return int(code), body


class Node:
    """A node: its netns, its agent and its node process (restartable)."""

    def __init__(self, cluster: "Cluster", name: str, index: int, ns: ztnet.Netns):
        self.cluster = cluster
        self.name = name
        self.index = index
        self.ns = ns
        self.ip = f"{BRIDGE_NET}.{index}"
        self.pod_net = f"10.90.{index}"
        self.gateway = f"{self.pod_net}.1"
        self.uplink = ""          # the node's end of its link to the bridge
        self.zt: ztnet.Ztunnel | None = None
        self.logs: list[Path] = []
        self.starts = 0
        sockdir = cluster.sockdir / name
        sockdir.mkdir(parents=True, exist_ok=True)
        self.zds = sockdir / "zds.sock"
        self.control = sockdir / "agent.sock"
        self.agent: subprocess.Popen | None = None
        self.agent_log = cluster.tmp / f"agent-{name}.log"

    # --- the agent -------------------------------------------------------------------
    def start_agent(self) -> None:
        self.agent = self.ns.spawn(agent_bin(), "serve", "--zds-socket", str(self.zds),
                                   "--control-socket", str(self.control), log=self.agent_log)
        deadline = time.monotonic() + 10
        while not (self.control.exists() and self.zds.exists()):
            if self.agent.poll() is not None:
                raise RuntimeError(f"agent of {self.name} exited:\n{self.agent_log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent of {self.name} never listened")
            time.sleep(0.02)

    def agent_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([agent_bin(), *args, "--control-socket", str(self.control)],
                              capture_output=True, text=True, timeout=30)

    # --- the node process ------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.logs[-1]

    def start(self, *extra: str, wait_pods: bool = True,
              wrap: tuple[str, ...] = ()) -> ztnet.Ztunnel:
        """Starts the node process (a new log file per start); with wait_pods, waits
        until the agent's snapshot is applied and every enrolled pod is served. `wrap`
        runs it under a command that execs it (prlimit --nofile=64 --)."""
        assert self.zt is None or self.zt.proc.poll() is not None, f"{self.name} is running"
        self.starts += 1
        log = self.cluster.tmp / f"{self.name}.{self.starts}.log"
        self.logs.append(log)
        c = self.cluster
        args = ["--inpod", "--inpod-uds", str(self.zds), "--node-name", self.name,
                "--local-config", str(c.config_path), "--ca-dir", str(c.ca_dir),
                "--workers", str(c.workers), *c.node_args, *extra]
        if not (c.ca_dir / "ca-cert.pem").exists():
            args.append("--ca-generate")  # the first process creates the one shared root
        self.zt = ztnet.Ztunnel(self.ns, log, *args, wrap=wrap)
        if wait_pods:
            self.wait_served()
        return self.zt

    def wait_served(self, timeout: float = 15.0) -> None:
        """Waits until this node's process serves every pod enrolled on it, and says
        it is ready (snapshot applied, no pod pending)."""
        for pod in self.cluster.pods_on(self.name):
            if pod.enrolled:
                self.wait_log(f"serving pod {pod.zds_uid} ", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.readiness()
            if code == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready: {code} {body}\n{self.log()}")
            time.sleep(0.1)

    def http(self, path: str, method: str = "GET", port: int = 15000,
             host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, str]:
        """One HTTP request from inside the node's netns (admin 15000 by default; 15020
        metrics, 15021 readiness): (status, body). Status 0 when no HTTP answer came
        (refused, reset, timeout); the body then says why."""
        return http_request(self.ns, host, port, path, method, timeout)

    def readiness(self) -> tuple[int, str]:
        out = self.ns.run(PY, "-c", (
            "import urllib.request, urllib.error\n"
            "try:\n"
            "  r = urllib.request.urlopen('http://127.0.0.1:15021/healthz/ready', timeout=2)\n"
            "  print(r.status, r.read().decode().strip())\n"
            "except urllib.error.HTTPError as e:\n"
            "  print(e.code, e.read().decode().strip())\n"
            "except OSError as e:\n"
            "  print(0, e)\n")).stdout.strip()
        code, _, body = out.partition(" ")
        return int(code), body

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful drain); returns the exit code."""
        return self.zt.stop(timeout=timeout)

    def kill(self) -> int:
        """kill -9: no drain, no cleanup by the process."""
        self.zt.proc.send_signal(signal.SIGKILL)
        return self.zt.proc.wait(timeout=10)

    def restart(self, kill: bool = False) -> ztnet.Ztunnel:
        code = self.kill() if kill else self.stop()
        if not kill:
            assert code == 0, f"{self.name} exited {code} on SIGTERM:\n{self.log()}"
        return self.start()

    @property
    def running(self) -> bool:
        return self.zt is not None and self.zt.proc.poll() is None

    # --- logs --------------------------------------------------------------------------
    def log(self, all_starts: bool = False) -> str:
        paths = self.logs if all_starts else self.logs[-1:]
        return "".join(p.read_text() for p in paths if p.exists())

    def mark(self) -> int:
        """An offset into the current log: lines after it are what happens next. A
        restart starts a new log, so a mark is only good until then."""
        return len(self.log())

    def lines(self, *needles: str, since: int = 0) -> list[str]:
        """Lines of the current log (after `since`) that contain every needle."""
        return [l for l in self.log()[since:].splitlines() if all(n in l for n in needles)]

    def wait_line(self, *needles: str, since: int = 0, count: int = 1,
                  timeout: float = 10.0) -> list[str]:
        """Waits until `count` lines after `since` contain every needle; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(*needles, since=since)
            if len(found) >= count:
                return found
            if self.zt is not None and self.zt.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.zt.proc.returncode}) while "
                                   f"waiting for {needles}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} x {needles} not in {self.name}'s log "
                                   f"(found {len(found)}):\n{self.log()[since:][-6000:]}")
            time.sleep(0.05)

    def wait_log(self, text: str, since: int = 0, timeout: float = 10.0) -> str:
        return self.wait_line(text, since=since, timeout=timeout)[0]

    def access(self, outcome: str | None = None, since: int = 0, **fields) -> list[dict]:
        """Access log records (parse_access) of the current log after `since` whose
        outcome ("complete", "denied", "failed", ...) and fields match. A field is matched
        by equality with str(value), or by a callable given the value ('' if absent).
        Dotted names go through a dict: access("complete", **{"dst.workload": "b1"})."""
        out = []
        for line in self.log()[since:].splitlines():
            rec = parse_access(line)
            if rec is None or (outcome is not None and rec["outcome"] != outcome):
                continue
            if all(want(rec.get(k, "")) if callable(want) else rec.get(k) == str(want)
                   for k, want in fields.items()):
                out.append(rec)
        return out

    def wait_access(self, outcome: str | None = None, since: int = 0, count: int = 1,
                    timeout: float = 10.0, **fields) -> list[dict]:
        """Waits until `count` access records match (see access); returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.access(outcome, since, **fields)
            if len(found) >= count:
                return found
            if self.zt is not None and self.zt.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.zt.proc.returncode}) while "
                                   f"waiting for access {outcome} {fields}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} x access {outcome} {fields} not in {self.name}'s "
                                   f"log (found {len(found)}):\n{self.log()[since:][-6000:]}")
            time.sleep(0.05)


class Cluster:
    """The simulated cluster. Builds everything in the constructor (start=True) and is
    torn down by close() / the with-block, or by the Topology it was given."""

    def __init__(self, topo: ztnet.Topology | None = None, tmp_path: Path | None = None,
                 policies_yaml: str = "", *, pods: list[Pod] | None = None,
                 workload_policies: dict[str, list[str]] | None = None, workers: int = 2,
                 node_args: tuple[str, ...] = (), start: bool = True, keep_tmp: bool = False,
                 mode: str = "ambient"):
        assert mode in ("ambient", "sidecar", "direct"), mode
        self.mode = mode
        self._own_topo = topo is None
        self.topo = topo or ztnet.Topology("cl")
        self._own_tmp = tmp_path is None
        self.tmp = Path(tmp_path or tempfile.mkdtemp(prefix="zt-cluster-"))
        # Unix socket paths are limited to 107 bytes: keep them short. Removed with the
        # topology (also when a caller only closes the topology).
        self.sockdir = Path(tempfile.mkdtemp(prefix=f"ztc-{os.getpid()}-", dir="/tmp"))
        self.topo.cleanups.append(lambda: shutil.rmtree(self.sockdir, ignore_errors=True))
        if self._own_tmp and not keep_tmp:
            self.topo.cleanups.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.config_path = self.tmp / "mesh.yaml"
        self.ca_dir = self.tmp / "ca"
        self.workers = workers
        self.node_args = tuple(node_args)
        self.policies_yaml = policies_yaml
        self.pods = pods or default_pods()
        for name, refs in (workload_policies or {}).items():
            self.pod(name).policies = list(refs)
        self.sinks: dict[tuple[str, int], tuple[subprocess.Popen, Path]] = {}
        self.nodes: dict[str, Node] = {}
        self.capture_stats: dict[str, int] = {}
        self._closed = False
        try:
            self._build_network()
            self.write_config()
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    # --- construction ----------------------------------------------------------------
    def _build_network(self) -> None:
        topo = self.topo
        switch = topo.netns("switch")
        switch.run("ip", "link", "add", "ztbr0", "type", "bridge")
        switch.run("ip", "link", "set", "ztbr0", "up")
        self.switch = switch
        node_names = sorted({p.node for p in self.pods})
        for i, name in enumerate(node_names, start=1):
            node = Node(self, name, i, topo.netns(name))
            self.nodes[name] = node
            ns = node.ns
            ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            up, port = topo.veth(ns, switch)
            node.uplink = up
            ns.run("ip", "addr", "add", f"{node.ip}/24", "dev", up)
            ns.run("ip", "link", "set", up, "up")
            switch.run("ip", "link", "set", port, "master", "ztbr0")
            switch.run("ip", "link", "set", port, "up")
        for pod in self.pods:
            node = self.nodes[pod.node]
            pod.ns = topo.netns(pod.name)
            pod_end, node_end = topo.veth(pod.ns, node.ns)
            pod.veth = pod_end
            pod.ns.run("ip", "addr", "add", f"{pod.ip}/32", "dev", pod_end)
            pod.ns.run("ip", "link", "set", pod_end, "up")
            pod.ns.run("ip", "route", "add", node.gateway, "dev", pod_end, "scope", "link")
            pod.ns.run("ip", "route", "add", "default", "via", node.gateway, "dev", pod_end)
            node.ns.run("ip", "addr", "add", f"{node.gateway}/32", "dev", node_end)
            node.ns.run("ip", "link", "set", node_end, "up")
            node.ns.run("ip", "route", "add", f"{pod.ip}/32", "dev", node_end)
        for node in self.nodes.values():
            for other in self.nodes.values():
                if other is not node:
                    node.ns.run("ip", "route", "add", f"{other.pod_net}.0/24", "via", other.ip)

    def start(self) -> None:
        """Ambient mode: agents, node processes (node-a first: it generates the CA), then
        enrollment of every mesh pod through the agent CLI. Sidecar mode: one dedicated
        proxy per mesh pod instead (start_sidecars). Direct mode: no mesh at all."""
        if self.mode == "direct":
            return
        if self.mode == "sidecar":
            return self.start_sidecars()
        for node in self.nodes.values():
            node.start_agent()
        for node in self.nodes.values():
            node.start(wait_pods=False)
        for pod in self.pods:
            if pod.mesh:
                out = self.enroll(pod.name)
                assert "node process acknowledged" in out, out
        for node in self.nodes.values():
            node.wait_served()

    def start_sidecars(self, *extra: str) -> None:
        """Sidecar mode (the comparison DESIGN §7 makes): no node process and no agent; each
        mesh pod runs its own `ztunnel --proxy-mode dedicated` inside its netns (same
        binary, same mTLS, one worker), which installs the pod's capture rules for its
        lifetime and removes them at exit. Readiness/metrics/admin are per pod."""
        for pod in self.pods:
            if not pod.mesh:
                continue
            args = ["--proxy-mode", "dedicated", "--pod-name", pod.name, "--pod-namespace",
                    pod.namespace, "--service-account", pod.service_account,
                    "--local-config", str(self.config_path), "--ca-dir", str(self.ca_dir),
                    "--workers", "1", *self.node_args, *extra]
            if not (self.ca_dir / "ca-cert.pem").exists():
                args.append("--ca-generate")  # the first proxy creates the shared root
            pod.sidecar = ztnet.Ztunnel(pod.ns, self.tmp / f"sidecar-{pod.name}.log", *args)

    # --- lookups -----------------------------------------------------------------------
    def pod(self, name: str) -> Pod:
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(name)

    def node(self, name: str) -> Node:
        """By node name (node-a) or by a pod name (a1: that pod's node)."""
        if name in self.nodes:
            return self.nodes[name]
        return self.nodes[self.pod(name).node]

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    def service_endpoints(self) -> list[Pod]:
        return [p for p in self.pods if p.mesh and SERVICE_KEY in p.services]

    # --- enrollment --------------------------------------------------------------------
    def enroll(self, name: str) -> str:
        """Enrolls a pod through its node's agent (rules + AddWorkload); returns the
        CLI's answer."""
        pod = self.pod(name)
        node = self.nodes[pod.node]
        r = node.agent_cli("enroll", "--netns", pod.netns_path, "--uid", pod.zds_uid,
                           "--name", pod.name, "--namespace", pod.namespace,
                           "--service-account", pod.service_account)
        assert r.returncode == 0, f"enroll {name}: {r.stdout}{r.stderr}"
        pod.enrolled = True
        return r.stdout

    def unenroll(self, name: str) -> str:
        pod = self.pod(name)
        r = self.nodes[pod.node].agent_cli("unenroll", "--uid", pod.zds_uid)
        assert r.returncode == 0, f"unenroll {name}: {r.stdout}{r.stderr}"
        pod.enrolled = False
        return r.stdout

    # --- config --------------------------------------------------------------------------
    def config_yaml(self, policies_yaml: str | None = None, exclude: tuple[str, ...] = (),
                    extra_keys: dict[str, dict[str, str]] | None = None) -> str:
        """The local config for the current pods, service and policies. `exclude` leaves
        pods out; `extra_keys` adds raw `key: value` lines to pods' workloads (e.g. to
        write a file the node processes must reject)."""
        out = ["workloads:"]
        for p in self.pods:
            if not p.mesh or p.name in exclude:
                continue
            out += [f"- uid: {p.uid}",
                    f"  name: {p.name}",
                    f"  namespace: {p.namespace}",
                    f"  serviceAccount: {p.service_account}",
                    f"  workloadIps: [\"{p.ip}\"]",
                    "  protocol: HBONE",
                    f"  node: {p.node}",
                    f"  clusterId: {CLUSTER_ID}"]
            if p.services:
                out.append("  services:")
                for key, ports in p.services.items():
                    mapping = ", ".join(f"{k}: {v}" for k, v in ports.items())
                    out.append(f"    \"{key}\": {{{mapping}}}")
            if p.policies:
                out.append("  authorizationPolicies: [" +
                           ", ".join(f"\"{r}\"" for r in p.policies) + "]")
            for key, value in (extra_keys or {}).get(p.name, {}).items():
                out.append(f"  {key}: {value}")
        out += ["services:",
                f"- name: {SERVICE_NAME}",
                f"  namespace: {SERVICE_NS}",
                f"  hostname: {SERVICE_HOST}",
                f"  vips: [\"/{SERVICE_VIP}\"]",
                f"  ports: {{{SERVICE_PORT}: {TARGET_PORT}}}"]
        text = "\n".join(out) + "\n"
        policies = self.policies_yaml if policies_yaml is None else policies_yaml
        if policies.strip():
            text += "\n" + policies.strip("\n") + "\n"
        return text

    def write_config(self, text: str | None = None) -> None:
        """Replaces the config file atomically (write + rename, as a ConfigMap swap
        does), so a node process never reads half a file. None: the generated config."""
        text = self.config_yaml() if text is None else text
        tmp = self.config_path.with_name(f".{self.config_path.name}.{time.monotonic_ns()}")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def set_policies(self, policies_yaml: str, wait: bool = True) -> None:
        """Rewrites the config with new policies; with wait, until every running node
        process has reloaded it."""
        marks = {n.name: n.mark() for n in self.nodes.values() if n.running}
        self.policies_yaml = policies_yaml
        self.write_config()
        if wait:
            for name, since in marks.items():
                self.nodes[name].wait_line("reloaded the local config", since=since)

    # --- traffic -----------------------------------------------------------------------
    def start_sink(self, pod: str, port: int = TARGET_PORT) -> Path:
        """A sink (sha256 + count answer per connection) on pod:port; returns its log,
        one JSON line per finished connection."""
        p = self.pod(pod)
        log = self.tmp / f"sink-{pod}-{port}.jsonl"
        log.touch()
        proc = p.ns.spawn(PY, str(TOOLS / "sink.py"), "0.0.0.0", str(port), "--log", str(log))
        p.ns.wait_listening(port)
        self.sinks[(pod, port)] = (proc, log)
        return log

    def sink_log(self, pod: str, port: int = TARGET_PORT) -> list[dict]:
        log = self.sinks[(pod, port)][1]
        return [json.loads(l) for l in log.read_text().splitlines() if l.strip()]

    def send(self, src: str, dst: str, port: int = TARGET_PORT, nbytes: int = 1 << 20,
             pattern: str = "", timeout: float = 60) -> dict:
        """send.py from pod `src` to `dst` (a pod name or an address): returns its JSON
        (sent, sha256, server_sha256, server_count, local_port). Raises if it fails."""
        ip = self._addr(dst)
        args = [PY, str(TOOLS / "send.py"), ip, str(port), str(nbytes)]
        if pattern:
            args += ["--pattern", pattern]
        r = subprocess.run(self.pod(src).ns.cmd(*args), capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"send {src} -> {ip}:{port} failed ({r.returncode}): "
                               f"{r.stderr.strip()[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def spawn_send(self, src: str, dst: str, port: int = TARGET_PORT, nbytes: int = 1 << 20,
                   *extra: str) -> subprocess.Popen:
        """send.py in the background (stdout piped), e.g. with --pause-after/--pause-file."""
        return self.pod(src).ns.spawn(PY, str(TOOLS / "send.py"), self._addr(dst), str(port),
                                      str(nbytes), *extra, stdout=subprocess.PIPE)

    def probe(self, src: str, dst: str, port: int = TARGET_PORT, nbytes: int = 1024,
              timeout: float = 5.0) -> dict:
        """probe.py from pod `src`: connected, sent, reply, reply_bytes, error."""
        out = self.pod(src).ns.run(PY, str(TOOLS / "probe.py"), self._addr(dst), str(port),
                                   "--bytes", str(nbytes), "--timeout", str(timeout)).stdout
        return json.loads(out.strip().splitlines()[-1])

    def _addr(self, dst: str) -> str:
        try:
            return self.pod(dst).ip
        except KeyError:
            return dst

    @contextmanager
    def capture(self, node: str, name: str = "wire"):
        """tcpdump on the node's link to the bridge while the block runs; yields the
        pcap path (complete once the block has ended)."""
        n = self.node(node)
        pcap = self.tmp / f"{name}-{n.name}.pcap"
        proc = subprocess.Popen(n.ns.cmd("tcpdump", "-i", n.uplink, "-n", "-s", "0", "-B",
                                         "65536", "-U", "--immediate-mode", "-w", str(pcap)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.topo.processes.append(proc)
        first = proc.stderr.readline()  # "listening on ...": the capture is armed
        if "listening on" not in first:
            proc.kill()
            raise RuntimeError(f"tcpdump did not start: {first}{proc.stderr.read()}")
        try:
            yield pcap
        finally:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
            # tcpdump's summary: "N packets captured / received by filter / dropped by kernel"
            self.capture_stats = {
                key: int(m.group(1)) if (m := re.search(rf"(\d+) packets? {text}", err)) else -1
                for key, text in (("captured", "captured"), ("received", "received by filter"),
                                  ("dropped", "dropped by kernel"))}

    # --- teardown ----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._own_topo:
            self.topo.close()  # runs the cleanups: socket dir, own temporary dir

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- reading captures --------------------------------------------------------------------

@dataclass
class Segment:
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes


def read_pcap(path: Path) -> list[Segment]:
    """The IPv4 TCP segments of a pcap file (Ethernet or Linux cooked link types)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path} is not a pcap file (magic {magic.hex()})")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:        # Ethernet
            if len(frame) < 14:
                continue
            ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
            if ethertype == 0x8100 and len(frame) >= 18:
                ethertype, ip = struct.unpack("!H", frame[16:18])[0], frame[18:]
        elif linktype == 113:    # Linux cooked (SLL)
            ethertype, ip = struct.unpack("!H", frame[14:16])[0], frame[16:]
        else:
            raise ValueError(f"unsupported pcap link type {linktype}")
        if ethertype != 0x0800 or len(ip) < 20 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total] if total else ip[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        out.append(Segment(".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20])),
                           sport, dport, seq, tcp[13], bytes(tcp[doff:])))
    return out


def stream(segments: list[Segment], src: str, sport: int, dst: str, dport: int) -> bytes:
    """One direction of a TCP connection, reassembled by sequence number from its start
    (stops at the first hole)."""
    parts = [s for s in segments if (s.src, s.sport, s.dst, s.dport) == (src, sport, dst, dport)]
    syn = [s for s in parts if s.flags & 0x02]
    if not syn:
        return b""
    isn = (syn[0].seq + 1) & 0xFFFFFFFF
    pieces = {}
    for s in parts:
        if s.payload:
            rel = (s.seq - isn) & 0xFFFFFFFF
            if len(s.payload) > len(pieces.get(rel, b"")):
                pieces[rel] = s.payload
    buf = bytearray()
    for rel in sorted(pieces):
        chunk = pieces[rel]
        if rel > len(buf):
            break
        buf += chunk[len(buf) - rel:]
    return bytes(buf)


def tls_records(buf: bytes) -> list[tuple[int, bytes]]:
    """(content type, fragment) of the complete TLS records at the start of `buf`."""
    out, i = [], 0
    while i + 5 <= len(buf):
        ctype, _ver, length = buf[i], buf[i + 1:i + 3], struct.unpack("!H", buf[i + 3:i + 5])[0]
        if ctype not in (20, 21, 22, 23) or i + 5 + length > len(buf):
            break
        out.append((ctype, buf[i + 5:i + 5 + length]))
        i += 5 + length
    return out


def _extensions(body: bytes, off: int) -> dict[int, bytes]:
    total = struct.unpack("!H", body[off:off + 2])[0]
    off += 2
    end, exts = off + total, {}
    while off + 4 <= end:
        etype, elen = struct.unpack("!HH", body[off:off + 4])
        exts[etype] = body[off + 4:off + 4 + elen]
        off += 4 + elen
    return exts


def parse_client_hello(hs: bytes) -> dict:
    """Handshake message bytes (type 1) -> supported_versions and ALPN offered."""
    assert hs[0] == 1, f"not a ClientHello: handshake type {hs[0]}"
    body = hs[4:4 + int.from_bytes(hs[1:4], "big")]
    off = 2 + 32
    off += 1 + body[off]                                        # session id
    off += 2 + struct.unpack("!H", body[off:off + 2])[0]        # cipher suites
    off += 1 + body[off]                                        # compression
    exts = _extensions(body, off)
    sv = exts.get(0x002B, b"")
    versions = [struct.unpack("!H", sv[1 + i:3 + i])[0] for i in range(0, sv[0] if sv else 0, 2)]
    alpn, a = [], exts.get(0x0010, b"")
    i = 2
    while i < len(a):
        alpn.append(a[i + 1:i + 1 + a[i]].decode(errors="replace"))
        i += 1 + a[i]
    return {"supported_versions": versions, "alpn": alpn, "extensions": sorted(exts)}


def parse_server_hello(hs: bytes) -> dict:
    """Handshake message bytes (type 2) -> the version the server selected."""
    assert hs[0] == 2, f"not a ServerHello: handshake type {hs[0]}"
    body = hs[4:4 + int.from_bytes(hs[1:4], "big")]
    off = 2 + 32
    off += 1 + body[off]                                        # session id echo
    off += 2 + 1                                                # cipher suite, compression
    exts = _extensions(body, off)
    sv = exts.get(0x002B, b"")
    return {"legacy_version": struct.unpack("!H", body[:2])[0],
            "selected_version": struct.unpack("!H", sv[:2])[0] if len(sv) >= 2 else None,
            "cipher_suite": struct.unpack("!H", body[off - 3:off - 1])[0]}


def tls_handshakes(pcap: Path, port: int = 15008) -> list[dict]:
    """Every TCP connection to `port` in the capture that starts with its SYN, with
    what its first records say: the ClientHello, the ServerHello, record types each
    way and the payload bytes each way."""
    segs = read_pcap(pcap)
    conns = []
    for s in segs:
        if s.dport == port and s.flags & 0x02 and not s.flags & 0x10:   # SYN, not SYN-ACK
            key = (s.src, s.sport, s.dst, s.dport)
            if key not in [c["key"] for c in conns]:
                conns.append({"key": key})
    for c in conns:
        src, sport, dst, dport = c["key"]
        up = stream(segs, src, sport, dst, dport)
        down = stream(segs, dst, dport, src, sport)
        c["bytes_up"] = sum(len(s.payload) for s in segs
                            if (s.src, s.sport, s.dst, s.dport) == c["key"])
        c["bytes_down"] = sum(len(s.payload) for s in segs
                              if (s.src, s.sport, s.dst, s.dport) == (dst, dport, src, sport))
        c["records_up"] = [t for t, _ in tls_records(up)][:20]
        c["records_down"] = [t for t, _ in tls_records(down)][:20]
        hs_up = b"".join(f for t, f in tls_records(up) if t == 22)
        hs_down = b"".join(f for t, f in tls_records(down) if t == 22)
        c["client_hello"] = parse_client_hello(hs_up) if hs_up[:1] == b"\x01" else None
        c["server_hello"] = parse_server_hello(hs_down) if hs_down[:1] == b"\x02" else None
        # In TLS 1.3 everything after the ServerHello is encrypted: the server sends no
        # other plaintext handshake message (no Certificate, no ServerKeyExchange).
        c["server_plain_handshake_types"] = _handshake_types(hs_down)
    return conns


def _handshake_types(hs: bytes) -> list[int]:
    out, i = [], 0
    while i + 4 <= len(hs):
        out.append(hs[i])
        i += 4 + int.from_bytes(hs[i + 1:i + 4], "big")
    return out


def pcap_has_port(pcap: Path, port: int) -> int:
    """How many TCP segments of the capture have `port` as source or destination."""
    return sum(1 for s in read_pcap(pcap) if port in (s.sport, s.dport))


_FIELD = re.compile(r'(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_access(line: str) -> dict | None:
    """An access log line ("connection <outcome> k=v ...", target `access`) as a dict:
    "outcome" plus every field, values as strings (quoted ones unescaped). Reads text
    lines (time TAB level TAB target TAB message) and `--log-format json` lines. None for
    any other line."""
    line = line.strip()
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        msg = str(obj.get("message", ""))
        if obj.get("scope", obj.get("target")) != "access" or not msg.startswith("connection "):
            return None
        out = {k: str(v) for k, v in obj.items() if k not in ("time", "level", "scope", "message")}
        out["outcome"] = msg[len("connection "):]
        return out
    parts = line.split("\t", 3)
    if len(parts) != 4 or parts[2] != "access" or not parts[3].startswith("connection "):
        return None
    text = parts[3][len("connection "):]
    first = _FIELD.search(text)
    out = {"outcome": (text[:first.start()] if first else text).strip()}
    for m in _FIELD.finditer(text):
        value = m.group(2)
        out[m.group(1)] = json.loads(value) if value.startswith('"') else value
    return out


def access_field(line: str, name: str) -> str:
    """The value of `name` in an access log line ('' when absent)."""
    parsed = parse_access(line)
    return (parsed or {}).get(name, "")


def main() -> int:
    """Builds the cluster, sends across it once, prints where everything is; with
    --hold keeps it up until Ctrl-C (for poking at it by hand), then tears it down."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--hold", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Cluster(keep_tmp=args.hold) as c:
        print(f"cluster up in {time.monotonic() - t0:.2f} s; files in {c.tmp}")
        for n in c.nodes.values():
            print(f"  {n.name}: netns {n.ns.name}, {n.ip}, log {n.log_path}")
        for p in c.pods:
            state = "enrolled" if p.enrolled else "out of the mesh"
            print(f"  {p.name}: netns {p.ns.name}, {p.ip}, {p.identity} ({state})")
        c.start_sink("b1")
        r = c.send("a1", "b1")
        print(f"a1 -> b1: {r['server_count']} bytes, sha256 "
              f"{'matches' if r['sha256'] == r['server_sha256'] else 'DIFFERS'}")
        if args.hold:
            print("holding; Ctrl-C tears everything down")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
