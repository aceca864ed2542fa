"""The enrollment agent (ztunnel-agent): rules in real pod namespaces, and the ZDS
protocol towards a node process. The node process here is a test double speaking ZDS
from Python (hand-encoded protobuf, SCM_RIGHTS), so each message can be checked and
each ack chosen. (The node process's own ZDS client is the next step of issue 5.)"""
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent
AGENT = os.environ.get("ZTUNNEL_AGENT_BIN", str(REPO / "build/ztunnel/agent/ztunnel-agent"))

HELLO_V1 = b"\x08\x01"


def field(num: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (all ZDS payloads are short)."""
    assert len(payload) < 128
    return bytes([num << 3 | 2, len(payload)]) + payload


def ack(error: str = "") -> bytes:
    return field(1, field(1, error.encode()) if error else b"")


def parse(buf: bytes) -> dict:
    """Decodes length-delimited fields into {field number: bytes} (last one wins)."""
    out, i = {}, 0
    while i < len(buf):
        key, length = buf[i], buf[i + 1]
        out[key >> 3] = buf[i + 2:i + 2 + length]
        i += 2 + length
    return out


class FakeNode:
    """A node process double: connects, says hello, receives requests, acks."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.sock.send(HELLO_V1)

    def receive(self):
        msg, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
        request = parse(msg)
        kind = {1: "add", 2: "del", 3: "snapshot_sent", 5: "keep"}[next(iter(request))]
        return kind, parse(request[next(iter(request))]), fds

    def answer(self, error: str = ""):
        self.sock.send(ack(error))

    def close(self):
        self.sock.close()


@pytest.fixture
def agent(topo, tmp_path):
    zds, control = tmp_path / "zds.sock", tmp_path / "agent.sock"
    log = open(tmp_path / "agent.log", "w")
    proc = subprocess.Popen([AGENT, "serve", "--zds-socket", str(zds), "--control-socket",
                             str(control), "--unenroll-grace", "1s"], stdout=log,
                            stderr=subprocess.STDOUT)
    topo.processes.append(proc)
    deadline = time.monotonic() + 10
    while not control.exists():
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)

    def cli(*args, check=True):
        r = subprocess.run([AGENT, *args, "--control-socket", str(control)],
                           capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    yield {"zds": zds, "cli": cli, "proc": proc, "log": tmp_path / "agent.log"}
    proc.terminate()
    proc.wait(timeout=10)


def rules(ns) -> str:
    return ns.run("iptables-save").stdout + ns.run("ip6tables-save").stdout


def enroll(cli, ns, uid, check=True):
    return cli("enroll", "--netns", f"/var/run/netns/{ns.name}", "--uid", uid, "--name",
               f"pod-{uid}", "--namespace", "shop", "--service-account", "web", check=check)


def netns_inode(name: str) -> int:
    return os.stat(f"/var/run/netns/{name}").st_ino


def test_enroll_installs_rules_and_the_node_gets_each_pod(topo, agent):
    pod1, pod2 = topo.netns("pod1"), topo.netns("pod2")
    out = enroll(agent["cli"], pod1, "u1").stdout
    assert "capture rules installed" in out and "no node process connected" in out
    assert "ISTIO_OUTPUT" in rules(pod1) and "--to-ports 15001" in rules(pod1)
    assert "ISTIO_OUTPUT" not in rules(pod2)

    # The node process connects: the snapshot holds pod1, with its netns descriptor.
    node = FakeNode(agent["zds"])
    kind, add, fds = node.receive()
    assert kind == "add" and add[1] == b"u1"
    info = parse(add[2])
    assert (info[1], info[2], info[3]) == (b"pod-u1", b"shop", b"web")
    assert len(fds) == 1 and os.fstat(fds[0]).st_ino == netns_inode(pod1.name)
    os.close(fds[0])
    node.answer()
    assert node.receive()[0] == "snapshot_sent"
    node.answer()

    # Enrolling while connected sends an Add at once. A NACK fails the enrollment
    # (exit 1, the reason on stderr and in the log) and takes it back: rules removed,
    # the node told to forget it, the pod not listed. Captured but unserved traffic
    # would be refused.
    result = {}

    def enroll_pod2(check=True):
        result["r"] = enroll(agent["cli"], pod2, "u2", check=check)

    t = threading.Thread(target=enroll_pod2, kwargs={"check": False})
    t.start()
    kind, add, fds = node.receive()
    assert kind == "add" and add[1] == b"u2" and len(fds) == 1
    os.close(fds[0])
    node.answer("no workload shop/pod-u2 in the config")
    kind, delete, fds = node.receive()
    assert kind == "del" and delete[2] == b"u2" and not fds
    node.answer()
    t.join(timeout=30)
    r = result["r"]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused pod u2: no workload shop/pod-u2 in the config" in r.stderr
    assert "capture rules removed" in r.stderr
    assert "ISTIO" not in rules(pod2)
    listed = agent["cli"]("list").stdout
    assert "u1 shop/pod-u1 web" in listed and "u2" not in listed
    assert "refused pod u2" in agent["log"].read_text()

    # Enrolled again once the node accepts it.
    t = threading.Thread(target=enroll_pod2)
    t.start()
    kind, add, fds = node.receive()
    assert kind == "add" and add[1] == b"u2"
    os.close(fds[0])
    node.answer()
    t.join(timeout=30)
    assert "node process acknowledged" in result["r"].stdout

    # Unenroll: rules gone from that pod only, and the node hears DelWorkload.
    t = threading.Thread(target=lambda: result.update(r=agent["cli"]("unenroll", "--uid", "u1")))
    t.start()
    kind, delete, fds = node.receive()
    assert kind == "del" and delete[2] == b"u1" and not fds
    node.answer()
    t.join(timeout=30)
    assert "capture rules removed" in result["r"].stdout
    # The redirects go at once; the connection routing stays for the grace (1 s here),
    # so connections the node process carries drain instead of being reset.
    nat = pod1.run("iptables-save", "-t", "nat").stdout + pod1.run("ip6tables-save", "-t",
                                                                   "nat").stdout
    assert "ISTIO" not in nat and "CONNMARK --restore-mark" in rules(pod1)
    deadline = time.monotonic() + 10
    while "ISTIO" in rules(pod1) or "lookup 100" in pod1.run("ip", "rule").stdout:
        assert time.monotonic() < deadline, rules(pod1)
        time.sleep(0.1)
    while "drain grace over, the rest of its capture removed" not in agent["log"].read_text():
        assert time.monotonic() < deadline, agent["log"].read_text()
        time.sleep(0.05)
    assert "ISTIO_OUTPUT" in rules(pod2)

    # The node process restarts: the new connection gets the whole snapshot again.
    node.close()
    node = FakeNode(agent["zds"])
    kind, add, fds = node.receive()
    assert kind == "add" and add[1] == b"u2"
    os.close(fds[0])
    node.answer()
    assert node.receive()[0] == "snapshot_sent"
    node.answer()
    node.close()


def test_bad_enrollment_input_is_refused_clearly(topo, agent, tmp_path):
    pod = topo.netns("pod")
    cli = agent["cli"]
    r = cli("enroll", "--netns", "/proc/self/stat", "--uid", "x", "--name", "n", "--namespace",
            "ns", "--service-account", "sa", check=False)
    assert r.returncode == 1 and "/proc/self/stat is not a network namespace" in r.stderr
    r = cli("enroll", "--netns", str(tmp_path / "missing"), "--uid", "x", "--name", "n",
            "--namespace", "ns", "--service-account", "sa", check=False)
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    r = cli("enroll", "--netns", f"/var/run/netns/{pod.name}", "--uid", "x", check=False)
    assert r.returncode == 2 and "enroll needs --name" in r.stderr
    r = cli("unenroll", "--uid", "nobody", check=False)
    assert r.returncode == 1 and "no enrolled pod with uid nobody" in r.stderr
    r = cli("frobnicate", check=False)
    assert r.returncode == 2 and 'unknown command "frobnicate"' in r.stderr
    # The same uid for another netns is refused; the first enrollment stands.
    enroll(cli, pod, "u1")
    other = topo.netns("other")
    r = enroll(cli, other, "u1", check=False)
    assert r.returncode == 1 and "already enrolled with netns" in r.stderr
    assert "ISTIO_OUTPUT" not in rules(other)
    # Enrolling again is idempotent: the same rules, once.
    before = rules(pod)
    enroll(cli, pod, "u1")
    assert rules(pod).count("--to-ports 15001") == before.count("--to-ports 15001") == 2

    # A node process speaking nonsense is dropped; the agent keeps serving.
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    bad.connect(str(agent["zds"]))
    bad.send(b"\xff\xff")
    time.sleep(0.3)
    bad.close()
    assert agent["proc"].poll() is None
    assert "u1 shop/pod-u1 web" in cli("list").stdout  # and still answers
    assert "no valid ZdsHello" in agent["log"].read_text()


def test_every_node_connection_is_kept_and_gets_each_message(topo, agent):
    """Two node processes at once (an upgrade's old and new one) both stay connected:
    each gets its own snapshot and then every Add and Del. (Dropping the older one made
    Istio's ztunnel reconnect at once: 120,985 reconnects in 20 s.)"""
    pod1, pod2 = topo.netns("pod1"), topo.netns("pod2")
    enroll(agent["cli"], pod1, "u1")
    nodes = [FakeNode(agent["zds"]), FakeNode(agent["zds"])]
    for node in nodes:
        kind, add, fds = node.receive()
        assert kind == "add" and add[1] == b"u1"
        os.close(fds[0])
        node.answer()
        assert node.receive()[0] == "snapshot_sent"
        node.answer()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=enroll(agent["cli"], pod2, "u2")))
    t.start()
    for node in nodes:
        kind, add, fds = node.receive()
        assert kind == "add" and add[1] == b"u2" and len(fds) == 1
        os.close(fds[0])
        node.answer()
    t.join(timeout=30)
    assert "2 node processes acknowledged" in result["r"].stdout
    t = threading.Thread(target=lambda: result.update(r=agent["cli"]("unenroll", "--uid", "u1")))
    t.start()
    for node in nodes:
        kind, delete, _ = node.receive()
        assert kind == "del" and delete[2] == b"u1"
        node.answer()
    t.join(timeout=30)
    # One leaving does not disturb the other.
    nodes[0].close()
    time.sleep(0.2)
    t = threading.Thread(target=lambda: result.update(r=agent["cli"]("unenroll", "--uid", "u2")))
    t.start()
    kind, delete, _ = nodes[1].receive()
    assert kind == "del" and delete[2] == b"u2"
    nodes[1].answer()
    t.join(timeout=30)
    assert result["r"].returncode == 0
    assert "dropping node process connection 1: it closed the connection" in \
        agent["log"].read_text()
    nodes[1].close()


def test_any_hello_version_is_accepted(topo, agent):
    """istio-cni accepts any ZdsHello version; so do we."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(10)
    sock.connect(str(agent["zds"]))
    sock.send(b"\x08\x07")  # version 7
    msg = sock.recv(65536)
    assert parse(msg) == {3: b""}  # an (empty) snapshot follows
    sock.close()


def test_wait_for_sync_holds_the_snapshot_and_keeps_pods_without_netns(topo, tmp_path):
    """A restarted agent rebuilds its pod list before any node hears a snapshot: a node
    that connects early waits; pods whose netns is not found yet are sent as Keep, the
    others as Add, then SnapshotSent."""
    zds, control = tmp_path / "zds.sock", tmp_path / "agent.sock"
    log = open(tmp_path / "agent.log", "w")
    proc = subprocess.Popen([AGENT, "serve", "--wait-for-sync", "--zds-socket", str(zds),
                             "--control-socket", str(control)], stdout=log,
                            stderr=subprocess.STDOUT)
    topo.processes.append(proc)
    deadline = time.monotonic() + 10
    while not control.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)

    def cli(*args):
        r = subprocess.run([AGENT, *args, "--control-socket", str(control)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    node = FakeNode(zds)
    pod1 = topo.netns("pod1")
    assert "snapshot once synced" in enroll(lambda *a, check=True: subprocess.run(
        [AGENT, *a, "--control-socket", str(control)], capture_output=True, text=True,
        timeout=30), pod1, "u1").stdout
    assert "kept until its network namespace is found" in cli("keep", "--uid", "u9")
    node.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        node.receive()  # nothing before `synced`
    node.sock.settimeout(10)
    t = threading.Thread(target=lambda: cli("synced"))
    t.start()
    got = {}
    for _ in range(2):
        kind, body, fds = node.receive()
        got[kind] = body[1]
        for fd in fds:
            os.close(fd)
        node.answer()
    assert got == {"add": b"u1", "keep": b"u9"}
    assert node.receive()[0] == "snapshot_sent"
    node.answer()
    t.join(timeout=30)
    assert "u9 - - -" in cli("list")
    # The kept pod's netns turns up: it becomes a normal enrollment (an Add).
    pod9 = topo.netns("pod9")
    t = threading.Thread(target=lambda: cli("enroll", "--netns", f"/var/run/netns/{pod9.name}",
                                            "--uid", "u9", "--name", "pod-u9", "--namespace",
                                            "shop", "--service-account", "web"))
    t.start()
    kind, add, fds = node.receive()
    assert kind == "add" and add[1] == b"u9" and len(fds) == 1
    os.close(fds[0])
    node.answer()
    t.join(timeout=30)
    assert "ISTIO_OUTPUT" in rules(pod9)
    node.close()
    proc.terminate()
    proc.wait(timeout=10)
