"""In-pod mode end to end: one node process serves two pods of its node inside their
own network namespaces. The agent enrolls them (rules in each pod, AddWorkload with the
pod's netns over ZDS); pod1's plain TCP to pod2 is captured in pod1, tunnelled over
HBONE from pod1's namespace to the listener on 15008 in pod2's, and delivered with
mTLS identities; unenrolling pod1 lets its traffic flow uncaptured again; a restart of
the node process gets the snapshot back and traffic resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ztnet

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "tools"
PY = sys.executable
AGENT = os.environ.get("ZTUNNEL_AGENT_BIN",
                       str(HERE.parent / "build/ztunnel/agent/ztunnel-agent"))
POD1_IP, POD2_IP, PORT = "10.81.0.1", "10.81.0.2", 8080
CONFIG = f"""
workloads:
- {{uid: shop/pod1, name: pod1, namespace: shop, serviceAccount: web,
   workloadIps: [{POD1_IP}], protocol: HBONE, node: node-a}}
- {{uid: shop/pod2, name: pod2, namespace: shop, serviceAccount: db,
   workloadIps: [{POD2_IP}], protocol: HBONE, node: node-a}}
"""


def send(ns, nbytes: int = 1 << 20) -> dict:
    out = ns.run(PY, str(TOOLS / "send.py"), POD2_IP, str(PORT), str(nbytes)).stdout
    return json.loads(out.strip().splitlines()[-1])


def listening(ns) -> str:
    return ns.run("ss", "-ltnH").stdout


def readiness(ns) -> tuple[int, str]:
    """GET /healthz/ready on 127.0.0.1:15021 in `ns`: (status, body)."""
    out = ns.run(PY, "-c", (
        "import urllib.request, urllib.error\n"
        "try:\n"
        "  r = urllib.request.urlopen('http://127.0.0.1:15021/healthz/ready', timeout=5)\n"
        "  print(r.status, r.read().decode().strip())\n"
        "except urllib.error.HTTPError as e:\n"
        "  print(e.code, e.read().decode().strip())\n")).stdout.strip()
    code, _, body = out.partition(" ")
    return int(code), body


class Agent:
    """The real enrollment agent, serving on sockets in `tmp`; the CLI talks to it."""

    def __init__(self, topo, tmp: Path):
        self.zds, self.control = tmp / "zds.sock", tmp / "agent.sock"
        self.proc = subprocess.Popen([AGENT, "serve", "--zds-socket", str(self.zds),
                                      "--control-socket", str(self.control),
                                      "--unenroll-grace", "1s"],
                                     stdout=open(tmp / "agent.log", "w"),
                                     stderr=subprocess.STDOUT)
        topo.processes.append(self.proc)
        while not self.control.exists():
            assert self.proc.poll() is None
            time.sleep(0.05)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([AGENT, *args, "--control-socket", str(self.control)],
                              capture_output=True, text=True, timeout=30)

    def enroll(self, ns, name: str, sa: str) -> str:
        """Enrolls pod `name` (namespace shop) and returns the CLI's answer."""
        r = self.cli("enroll", "--netns", f"/var/run/netns/{ns.name}", "--uid", f"shop/{name}",
                     "--name", name, "--namespace", "shop", "--service-account", sa)
        assert r.returncode == 0, r.stderr
        return r.stdout


def start_node(node, tmp: Path, zds: Path, *extra: str, log: str = "zt.log") -> ztnet.Ztunnel:
    """The node process in in-pod mode, with tmp/mesh.yaml and a generated CA."""
    return ztnet.Ztunnel(node, tmp / log, "--local-config", str(tmp / "mesh.yaml"), "--ca-dir",
                         str(tmp / "ca"), "--ca-generate", "--node-name", "node-a", "--inpod",
                         "--inpod-uds", str(zds), *extra)


def test_enrolled_pods_are_captured_and_tunnelled(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    agent = Agent(topo, tmp_path)
    zt = start_node(node, tmp_path, agent.zds)

    # Before enrollment: plain TCP straight through, nothing listens in the pods.
    assert send(pod1)["server_count"] == 1 << 20
    assert ":15001" not in listening(pod1)

    for ns, name, sa in ((pod1, "pod1", "web"), (pod2, "pod2", "db")):
        out = agent.enroll(ns, name, sa)
        assert "node process acknowledged" in out, out
    zt.wait_log("serving pod shop/pod2")
    for ns in (pod1, pod2):
        ports = listening(ns)
        assert "127.0.0.1:15001" in ports and "0.0.0.0:15006" in ports and "0.0.0.0:15008" in ports

    # Captured in pod1, tunnelled to pod2's 15008 with pod1's identity, delivered.
    done = send(pod1, 4 << 20)
    assert done["server_count"] == 4 << 20 and done["server_sha256"] == done["sha256"]
    log = zt.wait_log("direction=inbound")
    inbound = [l for l in log.splitlines() if "direction=inbound" in l and "complete" in l]
    assert inbound, log
    assert f"src.addr={POD1_IP}:" in inbound[-1]
    assert "src.identity=spiffe://cluster.local/ns/shop/sa/web" in inbound[-1]

    # The node process restarts while the pods stay enrolled: the agent sends the
    # snapshot again and traffic resumes, with no stale listeners left behind.
    assert zt.stop() == 0
    for ns in (pod1, pod2):
        assert ":15001" not in listening(ns)
    zt = start_node(node, tmp_path, agent.zds, log="zt2.log")
    zt.wait_log("serving pod shop/pod2")
    done = send(pod1)
    assert done["server_count"] == 1 << 20
    zt.wait_log("src.identity=spiffe://cluster.local/ns/shop/sa/web")

    # Unenroll pod1: its rules and listeners go, its traffic flows uncaptured again
    # (straight to pod2's sink, which pod2's rules still send through 15006).
    r = agent.cli("unenroll", "--uid", "shop/pod1")
    assert r.returncode == 0, r.stderr
    assert "capture rules removed" in r.stdout
    zt.wait_log("stopped serving pod shop/pod1")
    assert ":15001" not in listening(pod1)
    assert "REDIRECT" not in pod1.run("iptables-save").stdout
    assert send(pod1)["server_count"] == 1 << 20
    deadline = time.monotonic() + 10  # the connection routing goes after the 1 s grace
    while "ISTIO" in pod1.run("iptables-save").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert zt.proc.poll() is None
    assert zt.stop() == 0


def field(num: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([num << 3 | 2, len(payload)]) + payload


def add_request(uid: str, name: str, sa: str) -> bytes:
    info = field(1, name.encode()) + field(2, b"shop") + field(3, sa.encode())
    return field(1, field(1, uid.encode()) + field(2, info))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def install_rules(ns) -> None:
    """The agent's IPv4 rule set (the golden file) and policy routing, by hand: this
    test plays the agent itself."""
    golden = HERE.parent / "ztunnel/iptables/testdata/install_ipv4.golden"
    ns.run("iptables-restore", "--noflush", input=golden.read_text())
    ns.run("ip", "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100")
    ns.run("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")


class FakeAgent:
    """Listens on the ZDS socket like the agent; sends raw requests and reads acks."""

    def __init__(self, path: Path):
        import socket
        self.socket = socket
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.srv.settimeout(10)
        self.conn = None

    def accept(self) -> None:
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(10)
        assert self.conn.recv(64) == b"\x08\x01"  # ZdsHello{V1}

    def request(self, payload: bytes, fds=()) -> str:
        self.socket.send_fds(self.conn, [payload], list(fds))
        ack = self.conn.recv(65536)
        assert ack[:1] == b"\x0a", ack  # WorkloadResponse.ack
        _, off = varint(ack, 1)
        if off == len(ack):
            return ""
        assert ack[off:off + 1] == b"\x0a", ack  # Ack.error
        n, off = varint(ack, off + 1)
        return ack[off:off + n].decode()


def varint(buf: bytes, off: int) -> tuple[int, int]:
    """A protobuf varint at buf[off]: (value, offset after it)."""
    value = shift = 0
    while True:
        b = buf[off]
        off += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, off


def test_bad_zds_messages_are_nacked_and_hurt_no_pod(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    for ns in (pod1, pod2):
        install_rules(ns)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    agent = FakeAgent(tmp_path / "zds.sock")
    zt = start_node(node, tmp_path, tmp_path / "zds.sock")
    agent.accept()
    ns1 = os.open(f"/var/run/netns/{pod1.name}", os.O_RDONLY)
    ns2 = os.open(f"/var/run/netns/{pod2.name}", os.O_RDONLY)
    not_ns = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        assert agent.request(add_request("shop/pod1", "pod1", "web"), [ns1]) == ""
        assert agent.request(add_request("shop/pod2", "pod2", "db"), [ns2]) == ""
        assert readiness(node) == (500, "not ready: ZDS snapshot")
        assert agent.request(field(3, b"")) == ""  # SnapshotSent
        assert readiness(node) == (200, "ready")
        assert send(pod1)["server_count"] == 1 << 20

        # Each bad message gets its own NACK; nothing else changes.
        bad = {
            b"\xff\xff\xff": "cannot parse the message as a WorkloadRequest",
            add_request("shop/x", "x", "web"): "came with 0 file descriptors",
        }
        for payload, reason in bad.items():
            assert reason in agent.request(payload)
        assert "is not a network namespace" in agent.request(
            add_request("shop/x", "x", "web"), [not_ns])
        assert "came with 2 file descriptors" in agent.request(
            add_request("shop/x", "x", "web"), [ns1, ns2])
        # Keep and Del for a uid this node never saw are acked, as Istio's ztunnel does.
        assert agent.request(field(2, field(2, b"shop/nobody"))) == ""
        assert agent.request(field(5, field(1, b"shop/nobody"))) == ""
        assert "no workload shop/ghost on node" in agent.request(
            add_request("shop/ghost", "ghost", "web"), [ns1])
        assert 'runs as service account "intruder"' in agent.request(
            add_request("shop/pod9", "pod1", "intruder"), [ns1])

        # The enrolled pods never noticed.
        done = send(pod1, 2 << 20)
        assert done["server_count"] == 2 << 20 and done["server_sha256"] == done["sha256"]
        assert zt.proc.poll() is None
        log = zt.log.read_text()
        # Six bad messages were NACKed (the unknown Keep and Del were acked).
        assert log.count("NACK to the ZDS peer") >= 6
        assert "keep for pod shop/nobody, which this process does not serve" in log

        # The agent restarts and its snapshot no longer has pod1: pod1 is drained (its
        # listeners go), pod2 stays served.
        agent.conn.close()
        agent.accept()
        assert agent.request(add_request("shop/pod2", "pod2", "db"), [ns2]) == ""
        assert agent.request(field(3, b"")) == ""
        zt.wait_log("pod shop/pod1 is not in the agent's snapshot: draining it")
        assert ":15001" not in listening(pod1) and "127.0.0.1:15001" in listening(pod2)
    finally:
        for fd in (ns1, ns2, not_ns):
            os.close(fd)
    assert zt.stop() == 0


def test_a_pod_the_config_does_not_know_yet_is_refused_or_retried(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    only_pod2 = "workloads:\n" + CONFIG.split("- ", 2)[2].join(["- ", ""])
    assert "pod1" not in only_pod2 and "pod2" in only_pod2
    (tmp_path / "mesh.yaml").write_text(only_pod2)
    agent = Agent(topo, tmp_path)
    zt = start_node(node, tmp_path, agent.zds)
    zt.wait_log("connected to the ZDS socket")
    assert "node process acknowledged" in agent.enroll(pod2, "pod2", "db")

    # A live enrollment the node refuses fails and is taken back: no rules stay in
    # pod1, whose traffic is not captured (so not refused), and the node holds nothing.
    r = agent.cli("enroll", "--netns", f"/var/run/netns/{pod1.name}", "--uid", "shop/pod1",
                  "--name", "pod1", "--namespace", "shop", "--service-account", "web")
    assert r.returncode == 1
    assert 'refused pod shop/pod1: no workload shop/pod1 on node "node-a" in the config' \
        in r.stderr and "capture rules removed" in r.stderr
    assert "ISTIO" not in pod1.run("iptables-save").stdout
    assert send(pod1)["server_count"] == 1 << 20
    assert readiness(node) == (200, "ready")

    # The Kubernetes agent writes a pod into the config just before it enrolls it:
    # the node reads the file at once instead of waiting for its next poll.
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    assert "node process acknowledged" in agent.enroll(pod1, "pod1", "web")
    assert ":15001" in listening(pod1)

    # In a snapshot (the node process restarted and its config lacks pod1), a refused
    # pod stays enrolled: the node keeps it pending (not ready, naming it, its traffic
    # refused rather than leaked) and serves it as soon as the config names it.
    assert zt.stop() == 0
    (tmp_path / "mesh.yaml").write_text(only_pod2)
    zt = start_node(node, tmp_path, agent.zds, log="zt2.log")
    zt.wait_log('no workload shop/pod1 on node "node-a"', timeout=10)
    assert ":15001" not in listening(pod1)
    assert readiness(node) == (500, "not ready: pod shop/pod1 set up")
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    t0 = time.monotonic()
    zt.wait_log("pod shop/pod1 set up after", timeout=5)
    # A published config retries pending pods at the next tick, not the 5 s retry.
    assert time.monotonic() - t0 < 2.5
    assert readiness(node) == (200, "ready")
    done = send(pod1)
    assert done["server_count"] == 1 << 20
    zt.wait_log("src.identity=spiffe://cluster.local/ns/shop/sa/web")
    assert zt.stop() == 0


def no_answer(ns, ip: str, port: int) -> str:
    """Connects from `ns`, sends a byte, half-closes; returns what came back: '' for a
    reset or a close without data."""
    probe = ns.run(PY, "-c", (
        "import socket\n"
        "try:\n"
        "  s=socket.socket();s.settimeout(5)\n"
        f"  s.connect(({ip!r},{port}));s.sendall(b'x');s.shutdown(socket.SHUT_WR)\n"
        "  print(repr(s.recv(100)))\n"
        "except OSError as e:\n  print('error', e.errno)\n"), check=False)
    out = probe.stdout.strip()
    # ECONNRESET, ECONNREFUSED, and ENOTCONN (the reset came before our shutdown).
    return "" if out in ("b''", "error 104", "error 111", "error 107") else out


def test_proxy_ports_seen_from_a_pod_lead_nowhere(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    agent = Agent(topo, tmp_path)
    zt = start_node(node, tmp_path, agent.zds)
    for ns, name, sa in ((pod1, "pod1", "web"), (pod2, "pod2", "db")):
        agent.enroll(ns, name, sa)
    zt.wait_log("serving pod shop/pod2")

    # An app in pod1 dialing a proxy port anywhere: its own loopback (the listeners
    # there, reached without capture), its own address and pod2's (captured to 15001,
    # which refuses proxy ports: no loop), never gets an answer.
    results = {}
    for ip in ("127.0.0.1", POD1_IP, POD2_IP):
        for port in (15001, 15006, 15008):
            results[(ip, port)] = no_answer(pod1, ip, port)
    # The node process's own ports (readiness 15021, and admin 15000 / metrics 15020 to
    # come) live in its namespace, not the pod's: from the pod there is nothing there.
    for port in (15000, 15020, 15021):
        results[("127.0.0.1", port)] = no_answer(pod1, "127.0.0.1", port)
    assert readiness(node)[0] == 200
    assert all(v == "" for v in results.values()), results
    log = zt.log.read_text()
    for ip, port in results:
        assert f"dst.addr={ip}:{port} " not in log  # nothing was proxied anywhere
    assert "targets a proxy port (loop)" in log
    # The node process is fine and pod traffic still flows.
    assert zt.proc.poll() is None
    assert send(pod1)["server_count"] == 1 << 20
    assert zt.stop() == 0


def test_dedicated_mode_is_a_sidecar_in_the_pod(topo, tmp_path):
    pod1, pod2 = topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    # One proxy per pod, each on its own "node" as far as the config is concerned.
    (tmp_path / "mesh.yaml").write_text(CONFIG.replace(
        f"[{POD2_IP}], protocol: HBONE, node: node-a", f"[{POD2_IP}], protocol: HBONE, node: node-b"))
    common = ["--proxy-mode", "dedicated", "--local-config", str(tmp_path / "mesh.yaml"),
              "--ca-dir", str(tmp_path / "ca"), "--pod-namespace", "shop"]
    zt1 = ztnet.Ztunnel(pod1, tmp_path / "zt1.log", *common, "--ca-generate", "--pod-name",
                        "pod1", "--service-account", "web")
    zt2 = ztnet.Ztunnel(pod2, tmp_path / "zt2.log", *common, "--pod-name", "pod2")
    for ns in (pod1, pod2):
        assert "ISTIO_OUTPUT" in ns.run("iptables-save").stdout
    done = send(pod1, 2 << 20)
    assert done["server_count"] == 2 << 20 and done["server_sha256"] == done["sha256"]
    zt2.wait_log("src.identity=spiffe://cluster.local/ns/shop/sa/web")
    assert "direction=outbound" in zt1.wait_log("direction=outbound")
    # A wrong identity is refused at start, with the reason.
    bad = pod1.run(ztnet.ztunnel_bin(), *common, "--pod-name", "pod1", "--service-account",
                   "root", check=False)
    assert bad.returncode != 0
    assert 'has service account "web" in the config, not "root"' in bad.stderr + bad.stdout
    # Each proxy takes its rules with it.
    assert zt1.stop() == 0 and zt2.stop() == 0
    for ns in (pod1, pod2):
        assert "ISTIO" not in ns.run("iptables-save").stdout


def test_ipv6_traffic_of_a_dual_stack_pod_is_tunnelled_too(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    v6 = {pod1: "fd00:81::1", pod2: "fd00:81::2"}
    for ns, ip in v6.items():
        dev = ns.run("ip", "-o", "link", "show", "type", "veth").stdout.split(":")[1].strip()
        ns.run("ip", "-6", "addr", "add", f"{ip}/64", "dev", dev.split("@")[0], "nodad")
    pod2.spawn(PY, str(TOOLS / "sink.py"), v6[pod2], str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(
        CONFIG.replace(f"[{POD1_IP}]", f"[{POD1_IP}, '{v6[pod1]}']")
              .replace(f"[{POD2_IP}]", f"[{POD2_IP}, '{v6[pod2]}']"))
    agent = Agent(topo, tmp_path)
    zt = start_node(node, tmp_path, agent.zds)
    for ns, name, sa in ((pod1, "pod1", "web"), (pod2, "pod2", "db")):
        agent.enroll(ns, name, sa)
    zt.wait_log("serving pod shop/pod2")
    assert "[::1]:15001" in listening(pod1) and "[::]:15008" in listening(pod2)
    out = pod1.run(PY, str(TOOLS / "send.py"), v6[pod2], str(PORT), str(1 << 20)).stdout
    done = json.loads(out.strip().splitlines()[-1])
    assert done["server_count"] == 1 << 20 and done["server_sha256"] == done["sha256"]
    log = zt.wait_log("direction=inbound")
    assert f"src.addr=[{v6[pod1]}]" in log and "src.identity=spiffe://cluster.local/ns/shop/sa/web" in log
    assert zt.stop() == 0


def test_removing_a_pod_drains_its_connections_only(topo, tmp_path):
    node, pod1, pod2, pod3 = (topo.netns(n) for n in ("node", "pod1", "pod2", "pod3"))
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    topo.link(pod3, "10.82.0.3", pod2, "10.82.0.2")
    pod2.spawn(PY, str(TOOLS / "sink.py"), "0.0.0.0", str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(
        CONFIG.replace(f"[{POD2_IP}]", f"[{POD2_IP}, 10.82.0.2]") +
        "- {uid: shop/pod3, name: pod3, namespace: shop, serviceAccount: web,\n"
        "   workloadIps: [10.82.0.3], protocol: HBONE, node: node-a}\n")
    agent = Agent(topo, tmp_path)
    zt = start_node(node, tmp_path, agent.zds, "--drain-timeout", "1s")
    for ns, name, sa in ((pod1, "pod1", "web"), (pod2, "pod2", "db"), (pod3, "pod3", "web")):
        agent.enroll(ns, name, sa)
    zt.wait_log("serving pod shop/pod3")
    # Two live transfers to pod2, one from pod1 and one from pod3, both paused midway.
    total = 8 << 20
    live = {}
    for ns, dst in ((pod1, POD2_IP), (pod3, "10.82.0.2")):
        resume = tmp_path / f"resume-{ns.name}"
        proc = ns.spawn(PY, str(TOOLS / "send.py"), dst, str(PORT), str(total), "--pause-after",
                        str(total // 2), "--pause-file", str(resume), stdout=subprocess.PIPE)
        assert "paused_at" in proc.stdout.readline().decode()
        live[ns.name] = (proc, resume)
    # pod1 leaves: after its 1 s grace its connection is closed; pod3's is untouched.
    assert agent.cli("unenroll", "--uid", "shop/pod1").returncode == 0
    zt.wait_log("pod shop/pod1 removed: closed", timeout=5)
    for proc, resume in live.values():
        resume.touch()
    out1, _ = live[pod1.name][0].communicate(timeout=60)
    out3, _ = live[pod3.name][0].communicate(timeout=60)
    assert live[pod1.name][0].returncode != 0, out1  # reset mid-transfer
    done = json.loads(out3.decode().strip().splitlines()[-1])
    assert done["server_count"] == total and done["server_sha256"] == done["sha256"]
    assert zt.stop() == 0


def test_pods_waiting_for_the_config_are_bounded(topo, tmp_path):
    """Defect 9 of issue 15: a misbehaving agent sent 3,000 Adds for workloads the
    config does not have; the node kept every netns fd (and 190 MB) and retried all of
    them every 5 s. At most --max-pending-pods (256) wait; the rest are NACKed with the
    reason and not kept."""
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    for ns in (pod1, pod2):
        install_rules(ns)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    agent = FakeAgent(tmp_path / "zds.sock")
    zt = start_node(node, tmp_path, tmp_path / "zds.sock")
    agent.accept()
    ns1 = os.open(f"/var/run/netns/{pod1.name}", os.O_RDONLY)
    ns2 = os.open(f"/var/run/netns/{pod2.name}", os.O_RDONLY)
    try:
        assert agent.request(add_request("shop/pod1", "pod1", "web"), [ns1]) == ""
        assert agent.request(add_request("shop/pod2", "pod2", "db"), [ns2]) == ""
        assert agent.request(field(3, b"")) == ""  # SnapshotSent
        fds_before = len(os.listdir(f"/proc/{zt.pid}/fd"))
        rss_before = rss_kib(zt.pid)
        kept = refused = 0
        for i in range(3000):
            nack = agent.request(add_request(f"ghost/g{i}", f"g{i}", "web"), [ns2])
            assert "no workload shop/g" in nack, nack
            if "not kept for retry: 256 pods already wait" in nack:
                refused += 1
            else:
                assert "(retrying every 5 s)" in nack, nack
                kept += 1
        fds_after = len(os.listdir(f"/proc/{zt.pid}/fd"))
        print(f"pending pods: {kept} kept, {refused} refused, fds {fds_before} -> {fds_after}")
        assert (kept, refused) == (256, 2744)
        assert fds_after - fds_before <= 256 + 4, (fds_before, fds_after)
        assert rss_kib(zt.pid) - rss_before < ztnet.rss_budget(8 << 10), (rss_before, rss_kib(zt.pid))
        # The served pod never noticed.
        done = send(pod1, 1 << 20)
        assert done["server_count"] == 1 << 20 and done["server_sha256"] == done["sha256"]
    finally:
        os.close(ns1)
        os.close(ns2)
    assert zt.stop() == 0


def test_a_new_node_process_takes_over_with_no_connection_lost(topo, tmp_path):
    """An upgrade's hand-over: a second node process (its own netns, as a surged
    DaemonSet pod) gets the snapshot and binds every pod's listeners beside the first
    (SO_REUSEPORT); the first, told to stop, closes its listeners — what sat in their
    accept queues moves to the new ones (tcp_migrate_req, set by the agent) — and
    drains. A client opening a connection every 10 ms sees none refused or reset, and
    a transfer live across the hand-over delivers every byte."""
    node1, node2, pod1, pod2 = (topo.netns(n) for n in ("node1", "node2", "pod1", "pod2"))
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    agent = Agent(topo, tmp_path)
    old = start_node(node1, tmp_path, agent.zds, "--drain-timeout", "20s", log="old.log")
    for ns, name, sa in ((pod1, "pod1", "web"), (pod2, "pod2", "db")):
        assert "node process acknowledged" in agent.enroll(ns, name, sa)
    old.wait_log("serving pod shop/pod2")
    migrate = "/proc/sys/net/ipv4/tcp_migrate_req"
    for ns in (pod1, pod2):
        assert ns.run("cat", migrate).stdout.strip() == "1"

    stop = tmp_path / "stop-churn"
    churn = pod1.spawn(PY, str(TOOLS / "churn.py"), POD2_IP, str(PORT), "--reply", "digest",
                       "--stop-file", str(stop), stdout=subprocess.PIPE)
    total, resume = 8 << 20, tmp_path / "resume"
    live = pod1.spawn(PY, str(TOOLS / "send.py"), POD2_IP, str(PORT), str(total),
                      "--pause-after", str(total // 2), "--pause-file", str(resume),
                      stdout=subprocess.PIPE)
    assert "paused_at" in live.stdout.readline().decode()
    time.sleep(0.5)

    new = start_node(node2, tmp_path, agent.zds, log="new.log")
    new.wait_log("serving pod shop/pod2")
    assert readiness(node2)[0] == 200  # ready means every snapshot pod is served
    for ns in (pod1, pod2):  # both processes listen now
        assert listening(ns).count(":15001") + listening(ns).count(":15008") >= 3
    time.sleep(1.0)
    old.proc.send_signal(signal.SIGTERM)
    old.wait_log(": draining (stop accepting", timeout=10)
    time.sleep(0.5)
    resume.touch()  # the live transfer finishes on the old process, mid-drain
    out, _ = live.communicate(timeout=60)
    done = json.loads(out.decode().strip().splitlines()[-1])
    assert done["server_count"] == total and done["server_sha256"] == done["sha256"]
    assert old.proc.wait(timeout=30) == 0
    time.sleep(1.0)  # the new process alone
    stop.touch()
    out, _ = churn.communicate(timeout=60)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["failed"] == 0, result
    assert result["ok"] >= 150, result
    # Both served: the old one before and during the hand-over, the new one after.
    new_served = new.log.read_text().count("direction=outbound")
    old_served = old.log.read_text().count("direction=outbound")
    assert new_served >= 50 and old_served >= 50, (old_served, new_served)

    # Unenrolled, a pod gets its sysctl back with the rest of its capture.
    assert agent.cli("unenroll", "--uid", "shop/pod1").returncode == 0
    deadline = time.monotonic() + 10
    while pod1.run("cat", migrate).stdout.strip() != "0":
        assert time.monotonic() < deadline, "tcp_migrate_req stayed on after unenroll"
        time.sleep(0.1)
    assert new.stop() == 0
