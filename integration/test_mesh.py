"""The simulated cluster end to end (cluster.py): two nodes behind a bridge, three pods
per node, one in-pod node process and one enrollment agent per node, pods enrolled
through the agent CLI (real capture rules, real ZDS), one service VIP with an endpoint
on each node, and an out-of-mesh pod (a3).

    node-a: a1 shop/web   a2 shop/cart (echo endpoint)   a3 legacy (not in the mesh)
    node-b: b1 backend/api   b2 shop/cart (echo endpoint)   b3 backend/audit
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import cluster
from cluster import Cluster

MARKER = "ZT-PLAINTEXT-MARKER-51c9"
TLS13 = 0x0304


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each test (and its topology's teardown, which runs first): no namespace,
    veth or bridge of this run is left, whether the test passed or failed."""
    yield
    pid = os.getpid()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ours = [l.split()[0] for l in netns.splitlines()
            if l.strip() and l.startswith("zt-") and f"-{pid}-" in l.split()[0]]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    veths = [l.split(":")[1].strip() for l in links.splitlines()
             if l.split(":")[1].strip().startswith((f"ztv{pid % 10000}", "ztbr"))]
    sockdirs = [str(p) for p in Path("/tmp").glob(f"ztc-{pid}-*")]
    assert not ours and not veths and not sockdirs, \
        f"left behind: namespaces {ours}, links {veths}, socket dirs {sockdirs}"


@pytest.fixture
def mesh(topo, tmp_path):
    """A cluster factory: mesh(policies_yaml=..., workload_policies=...)."""
    def make(policies_yaml: str = "", **kw) -> Cluster:
        return Cluster(topo, tmp_path, policies_yaml, **kw)
    return make


def assert_exact(r: dict, nbytes: int) -> None:
    assert r["sent"] == nbytes and r["server_count"] == nbytes, r
    assert r["server_sha256"] == r["sha256"], r


def test_cross_node_pod_to_pod_is_mtls_hbone_byte_exact_and_encrypted(mesh):
    c = mesh()
    a1, b1 = c.pod("a1"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    c.start_sink("b1")
    nbytes = 4 << 20
    since_a, since_b = node_a.mark(), node_b.mark()
    with c.capture("node-a") as pcap:
        r = c.send("a1", "b1", nbytes=nbytes, pattern=MARKER)
    assert_exact(r, nbytes)

    # The destination node delivered it, naming the verified identity of the source.
    rec = node_b.wait_access("complete", since=since_b, direction="inbound",
                             bytes_sent=nbytes)[0]
    assert rec["src.identity"] == a1.identity, rec
    assert rec["src.addr"].startswith(a1.ip + ":"), rec
    assert rec["dst.addr"] == f"{b1.ip}:8080" and rec["dst.workload"] == "b1", rec
    # The source node tunnelled the app's connection over HBONE to b1's identity.
    out = node_a.wait_access("complete", since=since_a,
                             **{"src.addr": f"{a1.ip}:{r['local_port']}"})[0]
    assert out["direction"] == "outbound" and out["protocol"] == "HBONE", out
    assert out["src.identity"] == a1.identity and out["dst.identity"] == b1.identity, out
    assert out["bytes_sent"] == str(nbytes), out

    # What crossed node-a's link to the bridge: TLS 1.3 to b1's 15008, nothing else.
    stats = c.capture_stats
    assert stats["dropped"] == 0 and stats["captured"] == stats["received"] > 0, stats
    raw = pcap.read_bytes()
    assert MARKER.encode() not in raw, "plaintext crossed the node link"
    assert cluster.pcap_has_port(pcap, 8080) == 0, "a packet to the app port crossed the link"
    conns = [h for h in cluster.tls_handshakes(pcap, 15008)
             if h["key"][0] == a1.ip and h["key"][2] == b1.ip]
    assert len(conns) == 1, f"expected one HBONE connection a1 -> b1:15008: {conns}"
    h = conns[0]
    assert h["bytes_up"] >= nbytes, f"the capture saw only {h['bytes_up']} bytes to 15008"
    assert h["client_hello"] is not None, f"no ClientHello to 15008: {h['records_up']}"
    offered = [v for v in h["client_hello"]["supported_versions"] if not is_grease(v)]
    assert offered == [TLS13], f"ClientHello supported_versions: {[hex(v) for v in offered]}"
    assert h["client_hello"]["alpn"] == ["h2"], h["client_hello"]
    assert h["server_hello"] is not None, f"no ServerHello from 15008: {h['records_down']}"
    assert h["server_hello"]["selected_version"] == TLS13, h["server_hello"]
    # TLS 1.3: the certificates travel encrypted; the only plaintext handshake message
    # the server sends is its ServerHello, then application-data records.
    assert h["server_plain_handshake_types"] == [2], h
    assert 23 in h["records_up"] and 23 in h["records_down"], h
    if shutil.which("tshark"):  # a second, independent reading of the same capture
        fields = subprocess.run(
            ["tshark", "-r", str(pcap), "-d", "tcp.port==15008,tls", "-Y",
             "tls.handshake.type == 1", "-T", "fields", "-e", "ip.src", "-e", "tcp.dstport",
             "-e", "tls.handshake.extensions.supported_version"],
            capture_output=True, text=True).stdout
        assert f"{a1.ip}\t15008\t0x0304" in fields, fields


def test_same_node_pod_to_pod_over_hbone(mesh):
    c = mesh()
    a1, a2 = c.pod("a1"), c.pod("a2")
    node_a = c.node("node-a")
    c.start_sink("a2")
    nbytes = 3 << 20
    since = node_a.mark()
    r = c.send("a1", "a2", nbytes=nbytes)
    assert_exact(r, nbytes)
    rec = node_a.wait_access("complete", since=since, direction="inbound", bytes_sent=nbytes)[0]
    assert rec["src.identity"] == a1.identity, rec
    assert rec["dst.addr"] == f"{a2.ip}:8080" and rec["dst.workload"] == "a2", rec
    out = node_a.wait_access("complete", since=since,
                             **{"src.addr": f"{a1.ip}:{r['local_port']}"})[0]
    assert out["direction"] == "outbound" and out["protocol"] == "HBONE", out
    assert out["dst.identity"] == a2.identity, out
    # The node-b process saw none of it; the app got exactly what was sent, once.
    assert not c.node("node-b").access()
    sink = c.sink_log("a2")
    assert [(e["count"], e["sha256"]) for e in sink] == [(nbytes, r["sha256"])], sink


def test_service_vip_spreads_connections_over_endpoints_on_both_nodes(mesh):
    c = mesh()
    endpoints = c.service_endpoints()
    assert sorted(p.name for p in endpoints) == ["a2", "b2"]
    assert {p.node for p in endpoints} == {"node-a", "node-b"}
    for ep in endpoints:
        c.start_sink(ep.name)
    clients = {"a1": 12, "b3": 8}  # one client on each node
    for src, n in clients.items():
        for i in range(n):
            r = c.send(src, cluster.SERVICE_VIP, cluster.SERVICE_PORT, nbytes=65536 + i)
            assert_exact(r, 65536 + i)
    total = sum(clients.values())
    per_ep = {ep.name: len(c.sink_log(ep.name)) for ep in endpoints}
    assert sum(per_ep.values()) == total, per_ep
    # Round robin: each endpoint gets a fair share, not just one stray connection.
    assert min(per_ep.values()) >= total // 4, per_ep
    # Every connection was tunnelled over HBONE to an endpoint's target port, and each
    # client reached both endpoints.
    want = {f"{ep.ip}:8080" for ep in endpoints}
    for src, n in clients.items():
        pod = c.pod(src)
        recs = c.node(src).access("complete", direction="outbound",
                                  **{"src.addr": lambda v, ip=pod.ip: v.startswith(ip + ":")})
        assert len(recs) == n, recs
        assert {r["dst.addr"] for r in recs} == want, recs
        assert all(r["protocol"] == "HBONE" and r["src.identity"] == pod.identity
                   for r in recs), recs
    # Each endpoint's node logged what its sink received, with verified identities.
    for ep in endpoints:
        recs = c.node(ep.name).wait_access("complete", count=per_ep[ep.name],
                                           direction="inbound", **{"dst.workload": ep.name})
        assert len(recs) == per_ep[ep.name], recs
        assert {r["src.identity"] for r in recs} <= {c.pod(s).identity for s in clients}, recs


def test_out_of_mesh_pod_reaches_mesh_pods_through_15006(mesh):
    c = mesh()
    a3 = c.pod("a3")
    assert not a3.enrolled and a3.uid not in c.config_path.read_text()
    c.start_sink("b1")
    c.start_sink("a2")
    for dst, nbytes in (("b1", 2 << 20), ("a2", 1 << 20)):  # other node, same node
        node = c.node(dst)
        since = node.mark()
        r = c.send("a3", dst, nbytes=nbytes)
        assert_exact(r, nbytes)
        rec = node.wait_access("complete", since=since,
                               **{"src.addr": f"{a3.ip}:{r['local_port']}"})[0]
        assert rec["direction"] == "inbound" and rec["protocol"] == "TCP", rec
        assert rec["dst.addr"] == f"{c.pod(dst).ip}:8080", rec
        assert rec["bytes_sent"] == str(nbytes), rec
        assert not rec.get("src.identity"), rec
    # a3 is not captured on its own side: node-a never proxied its traffic outbound.
    assert not c.node("node-a").access(direction="outbound",
                                       **{"src.addr": lambda v: v.startswith(a3.ip + ":")})
    assert "ISTIO" not in a3.ns.run("iptables-save").stdout




def test_deny_policy_refuses_with_401_and_other_pairs_keep_working(mesh):
    c = mesh(cluster.DENY_WEB, workload_policies={"b1": ["backend/deny-web"]})
    a1, a2, b1 = c.pod("a1"), c.pod("a2"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    for p in ("b1", "b3"):
        c.start_sink(p)

    # a1 (shop/web) -> b1: reset or closed, no answer; the app never sees a byte.
    # (ENOTCONN: the reset came before the probe's shutdown(); it had connected.)
    res = c.probe("a1", "b1", nbytes=4096)
    assert res["reply_bytes"] == 0 and res["error"] in ("", "ECONNRESET", "ENOTCONN"), res
    rec = node_b.wait_access("denied")[0]
    assert rec["src.identity"] == a1.identity and rec["direction"] == "inbound", rec
    assert rec["dst.addr"] == f"{b1.ip}:8080", rec
    assert rec["response"] == "401" and rec["reason"] == "denied by backend/deny-web", rec
    # The source node's record of the refused tunnel names the 401.
    src = node_a.wait_access(direction="outbound", **{"dst.addr": f"{b1.ip}:8080"})[0]
    assert "401" in src.get("error", "") and src["src.identity"] == a1.identity, src
    time.sleep(0.3)
    assert c.sink_log("b1") == []
    assert not node_b.access("complete", **{"dst.workload": "b1"})

    # Another service account to b1, and a1 to another pod of b1's namespace: allowed.
    assert_exact(c.send("a2", "b1", nbytes=1 << 20), 1 << 20)
    assert_exact(c.send("a1", "b3", nbytes=1 << 20), 1 << 20)
    assert [e["count"] for e in c.sink_log("b1")] == [1 << 20]
    assert [e["count"] for e in c.sink_log("b3")] == [1 << 20]
    ok = node_b.wait_access("complete", **{"dst.workload": "b1"})
    assert [r["src.identity"] for r in ok] == [a2.identity], ok
    # And the denied pair is still denied (the verdict is not a one-off).
    assert c.probe("a1", "b1")["reply_bytes"] == 0
    assert len(node_b.wait_access("denied", count=2)) == 2
    assert len(c.sink_log("b1")) == 1


def test_malformed_config_reload_is_rejected_and_traffic_keeps_flowing(mesh, tmp_path):
    c = mesh()
    a1 = c.pod("a1")
    nodes = list(c.nodes.values())
    c.start_sink("b1")
    c.start_sink("a2")
    assert_exact(c.send("a1", "b1"), 1 << 20)

    # A transfer is live (paused midway) while the bad files arrive.
    total = 8 << 20
    resume = tmp_path / "resume"
    live = c.spawn_send("a1", "b1", 8080, total, "--pause-after", str(total // 2),
                        "--pause-file", str(resume))
    assert "paused_at" in live.stdout.readline().decode()

    good = c.config_yaml()
    # 1. An unknown field, in a file that also drops b1: applied, it would turn a1 -> b1
    #    into plaintext (b1 no longer a mesh workload); rejected, nothing changes.
    bad = c.config_yaml(exclude=("b1",), extra_keys={"a2": {"colour": "blue"}})
    assert "colour: blue" in bad and c.pod("b1").uid not in bad
    marks = [n.mark() for n in nodes]
    c.write_config(bad)
    for n, since in zip(nodes, marks):
        line = n.wait_log("rejected the new local config", since=since)
        assert "keeping the previous one" in line, line
        assert 'workloads[1]: unknown key "colour"' in line, line
    # 2. Not YAML at all.
    marks = [n.mark() for n in nodes]
    c.write_config(good.replace("workloads:\n", "workloads: [\n", 1))
    for n, since in zip(nodes, marks):
        line = n.wait_log("rejected the new local config", since=since)
        assert "line " in line and "column " in line, line

    # The live transfer completes, new connections still go over HBONE with identities.
    resume.touch()
    out, _ = live.communicate(timeout=60)
    assert_exact(json.loads(out.decode().strip().splitlines()[-1]), total)
    since = c.node("b1").mark()
    assert_exact(c.send("a1", "b1", nbytes=2 << 20), 2 << 20)
    rec = c.node("b1").wait_access("complete", since=since, direction="inbound",
                                   bytes_sent=2 << 20)[0]
    assert rec["src.identity"] == a1.identity, rec
    assert_exact(c.send("b3", cluster.SERVICE_VIP, 80, nbytes=1 << 16), 1 << 16)
    assert all(n.running for n in nodes)
    for n in nodes:
        assert not n.lines("reloaded the local config")
        assert len(n.lines("rejected the new local config")) == 2

    # A good file is taken again afterwards: the watcher is still alive.
    marks = [n.mark() for n in nodes]
    c.write_config(good + "\n# touched\n")
    for n, since in zip(nodes, marks):
        n.wait_log("reloaded the local config: 5 workloads", since=since)


def test_node_process_killed_and_restarted_gets_the_snapshot_and_traffic_resumes(mesh):
    c = mesh()
    a1, a2, b1 = c.pod("a1"), c.pod("a2"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    c.start_sink("b1")
    c.start_sink("a2")
    # Pooled HBONE connections both ways across the nodes.
    assert_exact(c.send("a1", "b1"), 1 << 20)
    assert_exact(c.send("b1", "a2"), 1 << 20)

    assert node_a.kill() == -9
    # Down: the pods stay enrolled (rules in place), so their traffic fails closed:
    # refused, never sent around the mesh in plaintext; nothing reaches the sinks.
    listed = node_a.agent_cli("list")
    assert listed.returncode == 0 and a1.zds_uid in listed.stdout and a2.zds_uid in listed.stdout
    assert "ISTIO_OUTPUT" in a1.ns.run("iptables-save").stdout
    down = c.probe("a1", "b1")
    assert not down["connected"] and down["error"] == "ECONNREFUSED", down
    assert c.probe("b1", "a2")["reply_bytes"] == 0
    assert len(c.sink_log("b1")) == 1 and len(c.sink_log("a2")) == 1

    # Back up: the agent sends its snapshot again and both pods are served.
    node_a.start()
    assert node_a.starts == 2
    agent_log = node_a.agent_log.read_text()
    assert re.search(r"node process \d+ connected; sending the snapshot of 2 pod\(s\)",
                     agent_log), agent_log
    assert node_a.lines("serving pod", a1.zds_uid) and node_a.lines("serving pod", a2.zds_uid)
    assert not node_a.lines("NACK")

    since_b = node_b.mark()
    assert_exact(c.send("a1", "b1", nbytes=2 << 20), 2 << 20)
    rec = node_b.wait_access("complete", since=since_b, direction="inbound",
                             bytes_sent=2 << 20)[0]
    assert rec["src.identity"] == a1.identity, rec
    # Node-b's pooled connection to the killed process is gone; it dials anew.
    assert_exact(c.send("b1", "a2", nbytes=2 << 20), 2 << 20)
    rec = node_a.wait_access("complete", direction="inbound", bytes_sent=2 << 20)[0]
    assert rec["src.identity"] == b1.identity, rec
    assert node_a.stop() == 0
