#!/usr/bin/env python3
"""make demo: ztunnel as a service mesh on a simulated two-node cluster, end to end.

Builds the cluster of integration/cluster.py (network namespaces on this machine: two
nodes on a bridge, three pods per node, one `ztunnel --inpod` process and one
`ztunnel-agent` per node), sends real traffic through it and shows what the product does:
identities, encryption on the wire, service load balancing, an out-of-mesh client, an
authorization policy, metrics and the admin endpoint. Everything is torn down at the end,
also on failure or Ctrl-C; the node logs are kept under /tmp/ztunnel-demo-<time>/.

    /usr/bin/python3 scripts/demo.py [--ztunnel PATH] [--agent PATH]

The binaries also come from ZTUNNEL_BIN / ZTUNNEL_AGENT_BIN. Needs root. Exit 0 when
every step did what it says, 1 (with the step and the reason) otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "integration"))
import cluster  # noqa: E402
import ztnet  # noqa: E402

MARKER = "SECRET-ORDER-4242;"   # what the apps send, to look for on the wire
DEADLINE_S = 150             # the whole demo; it normally takes a few seconds
WIDTH = 100


class StepFailed(Exception):
    pass


_step = {"n": 0, "title": "preparing"}


def step(title: str, *explain: str) -> None:
    _step["n"] += 1
    _step["title"] = title
    print(f"\n[{_step['n']}] {title}", flush=True)
    for para in explain:
        print(textwrap.fill(para, WIDTH, initial_indent="    ", subsequent_indent="    "))
    print(flush=True)


def say(text: str = "", indent: int = 6) -> None:
    print(" " * indent + text, flush=True)


def check(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


def short_access(line: str, keep: tuple[str, ...]) -> list[str]:
    """The message of an access-log line with only the `keep` fields, wrapped."""
    msg = line.split("\t")[-1] if "\t" in line else line
    outcome = " ".join(msg.split()[:2])
    fields = {m.group(1): m.group(0).strip() for m in _FIELD.finditer(msg)}
    text = outcome + " " + " ".join(fields[k] for k in keep if k in fields)
    return textwrap.wrap(text, WIDTH - 8, subsequent_indent="    ", break_on_hyphens=False)


def access_line(node: cluster.Node, outcome: str, since: int, **fields) -> str:
    """The raw log line of the first access record matching (after waiting for it)."""
    node.wait_access(outcome, since=since, **fields)
    for line in node.log()[since:].splitlines():
        rec = cluster.parse_access(line)
        if rec and rec["outcome"] == outcome and all(
                rec.get(k) == str(v) for k, v in fields.items()):
            return line
    raise StepFailed(f"no '{outcome}' access line {fields} in {node.name}'s log")


def http_get(node: cluster.Node, port: int, path: str) -> str:
    """GET http://127.0.0.1:<port><path> from inside the node's network namespace."""
    r = node.ns.run(cluster.PY, "-c", (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')\n"),
        f"http://127.0.0.1:{port}{path}", check=False)
    if r.returncode != 0:
        raise StepFailed(f"GET :{port}{path} on {node.name} failed: {r.stderr.strip()[-500:]}")
    return r.stdout


_FIELD = re.compile(r'(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_series(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\}\s+(\S+)$", line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2))), float(m.group(3))))
    return out


def app_bytes(nbytes: int) -> bytes:
    """The exact bytes send.py --pattern MARKER writes (same block and rotation)."""
    unit = MARKER.encode()
    block = (unit * ((1 << 20) // len(unit) + 1))[: 1 << 20]
    out, sent = bytearray(), 0
    while sent < nbytes:
        chunk = block[: min(len(block), nbytes - sent)]
        block = block[7:] + block[:7]
        out += chunk
        sent += len(chunk)
    return bytes(out)


def redirect_count(pod: cluster.Pod, port: int) -> int:
    """Packets the pod's `REDIRECT --to-ports <port>` rule has matched (nat rules see
    only the first packet of a connection, so: connections)."""
    out = pod.ns.run("iptables-save", "-c", "-t", "nat").stdout
    for line in out.splitlines():
        if line.endswith(f"--to-ports {port}"):
            return int(line[1:line.index(":")])
    raise StepFailed(f"no REDIRECT to {port} in {pod.name}'s rules")


def mib(n: int) -> str:
    return f"{n:,} bytes ({n / (1 << 20):.1f} MiB)" if n >= 1 << 20 else f"{n:,} bytes"


def save_logs(c: cluster.Cluster | None, work: Path, dest: Path) -> None:
    """Copies the node and agent logs, the config and the captures to `dest`. Without a
    cluster (it failed to start), whatever logs its directory holds."""
    dest.mkdir(parents=True, exist_ok=True)
    if c is None:
        for f in [*work.glob("*.log"), *work.glob("*.yaml")]:
            shutil.copy(f, dest / f.name)
        return
    for n in c.nodes.values():
        for i, log in enumerate(n.logs, start=1):
            if log.exists():
                suffix = "" if len(n.logs) == 1 else f".{i}"
                shutil.copy(log, dest / f"{n.name}{suffix}.log")
        if n.agent_log.exists():
            shutil.copy(n.agent_log, dest / f"agent-{n.name}.log")
    for f in [c.config_path, *c.tmp.glob("*.pcap")]:
        if f.exists():
            shutil.copy(f, dest / f.name)


# --- the demo ------------------------------------------------------------------------------

def run(c: cluster.Cluster, logs_dir: Path, t0: float) -> dict:
    a1, a2, a3, b1 = c.pod("a1"), c.pod("a2"), c.pod("a3"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    report: dict = {}

    # 1 ----------------------------------------------------------------------------------
    step("A two-node cluster, built on this machine",
         "Every node and every pod is a Linux network namespace; pods reach each other "
         "through their nodes and a bridge, as in a real cluster. Each node runs one ztunnel "
         "process and one enrollment agent: the agent puts capture rules into each mesh pod "
         "and hands the pod to ztunnel, which then listens inside it. Apps are not changed.",
         "A pod's identity comes from its namespace and service account, as a SPIFFE id "
         "(spiffe://cluster.local/ns/<namespace>/sa/<account>); ztunnel gets a certificate "
         "for it from the cluster's certificate authority.")
    say(f"cluster up in {time.monotonic() - t0:.1f} s", 4)
    served = {}
    for n in c.nodes.values():
        dump = json.loads(http_get(n, 15000, "/config_dump"))
        served.update({p["info"]["name"]: p["state"] for p in dump.get("workloadState", {}).values()})
    for n in c.nodes.values():
        say(f"{n.name}  {n.ip:<11} ztunnel pid {n.zt.pid}", 4)
        for p in c.pods_on(n.name):
            if p.mesh:
                check(served.get(p.name) == "Up",
                      f"{n.name} does not serve pod {p.name} (config_dump: {served.get(p.name)})")
                who, state = p.identity, "enrolled"
            else:
                check(p.name not in served, f"{p.name} should be out of the mesh")
                who, state = "(no identity)", "NOT in the mesh"
            svc = "  echo endpoint" if cluster.SERVICE_KEY in p.services else ""
            say(f"{p.name}  {p.ip:<11} {who:<43} {state}{svc}", 6)
    eps = ", ".join(f"{p.name}:{cluster.TARGET_PORT}" for p in c.service_endpoints())
    say(f"service {cluster.SERVICE_HOST}  VIP {cluster.SERVICE_VIP}:{cluster.SERVICE_PORT}"
        f" -> {eps}", 4)
    for p in ("b1", "a2", "b2"):
        c.start_sink(p)  # each app: reads everything, answers "<sha256> <count>"

    # 2 ----------------------------------------------------------------------------------
    nbytes = 4 << 20
    step("Pod to pod across nodes: a1 (node-a) -> b1 (node-b)",
         f"The app in a1 opens an ordinary TCP connection to {b1.ip}:8080 and sends "
         f"{nbytes >> 20} MiB; it knows nothing about the mesh. ztunnel on node-a catches "
         "the connection and carries it to node-b inside a mutual-TLS tunnel (Istio calls "
         "it HBONE: TLS 1.3 to port 15008); ztunnel on node-b checks a1's certificate "
         "and hands the bytes to b1.")
    since_b = node_b.mark()
    with c.capture("node-a", "a1-to-b1") as pcap:
        r = c.send("a1", "b1", nbytes=nbytes, pattern=MARKER)
    check(r["server_count"] == nbytes and r["server_sha256"] == r["sha256"],
          f"b1 received {r['server_count']} of {nbytes} bytes (sha256 {r['server_sha256']} "
          f"vs {r['sha256']})")
    say(f"b1 received {mib(r['server_count'])}; sha256 equal on both sides")
    line = access_line(node_b, "complete", since_b, direction="inbound", bytes_sent=nbytes)
    rec = cluster.parse_access(line)
    check(rec.get("src.identity") == a1.identity,
          f"node-b logged source identity {rec.get('src.identity')!r}, want {a1.identity}")
    check(rec.get("dst.identity") == b1.identity,
          f"node-b logged destination identity {rec.get('dst.identity')!r}, want {b1.identity}")
    say(f"node-b verified the client:   {rec['src.identity']}  (a1)")
    say(f"and served it as:             {rec['dst.identity']}  (b1)")
    say("node-b's access log (some fields left out):")
    for l in short_access(line, ("src.addr", "src.identity", "dst.addr", "dst.identity",
                                 "direction", "protocol", "bytes_sent", "bytes_recv",
                                 "duration")):
        say("  " + l)
    report["cross"] = nbytes

    # 3 ----------------------------------------------------------------------------------
    step("Proof it was encrypted: what crossed the wire between the nodes",
         "While step 2 ran, tcpdump recorded node-a's link to the bridge. We read the "
         f"recording: the app sent the text \"{MARKER}\" over and over, so if anything went "
         "in the clear we would find it.")
    stats = c.capture_stats
    check(stats.get("dropped") == 0, f"tcpdump dropped packets: {stats}")
    raw = pcap.read_bytes()
    plain = app_bytes(nbytes).count(MARKER.encode())
    seen = raw.count(MARKER.encode())
    conns = [h for h in cluster.tls_handshakes(pcap, 15008)
             if h["key"][0] == a1.ip and h["key"][2] == b1.ip]
    check(len(conns) == 1, f"expected one connection a1 -> b1:15008 in the capture, "
                           f"found {len(conns)}")
    h = conns[0]
    ch, sh = h["client_hello"], h["server_hello"]
    check(ch is not None and sh is not None, f"no TLS handshake seen on 15008: {h}")
    offered = [v for v in ch["supported_versions"]
               if not ((v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF))]  # minus GREASE
    check(offered == [0x0304] and sh["selected_version"] == 0x0304,
          f"not TLS 1.3: offered {[hex(v) for v in offered]}, "
          f"selected {sh['selected_version']}")
    check(h["server_plain_handshake_types"] == [2],
          f"server sent plaintext handshake messages {h['server_plain_handshake_types']}")
    check(seen == 0, f"the plaintext marker crossed the node link {seen} times")
    to_app = cluster.pcap_has_port(pcap, cluster.TARGET_PORT)
    check(to_app == 0, f"{to_app} packets to port 8080 crossed the node link")
    suites = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
              0x1303: "TLS_CHACHA20_POLY1305_SHA256"}
    say(f"capture: {stats['captured']} packets, {len(raw):,} bytes")
    say(f"one TCP connection {a1.ip} -> {b1.ip}:15008 carrying {h['bytes_up']:,} bytes")
    say(f"ClientHello offers TLS 1.3 only, ALPN {ch['alpn']}; ServerHello picks TLS 1.3, "
        f"{suites.get(sh['cipher_suite'], hex(sh['cipher_suite']))}")
    say("after the ServerHello everything is encrypted, the certificates too")
    say(f"\"{MARKER}\": {plain:,} times in what the app sent, {seen} times on the wire")
    say(f"packets to the app's port 8080 on the wire: {to_app}")

    # 4 ----------------------------------------------------------------------------------
    tries = 6
    step(f"A service address: a1 -> {cluster.SERVICE_VIP}:{cluster.SERVICE_PORT}, "
         f"{tries} times",
         f"No pod owns the service address {cluster.SERVICE_VIP}. For each connection, "
         "ztunnel on a1's node picks one of the service's endpoints (a2 on the same node, "
         "b2 on node-b) and tunnels the connection to it, port 80 becoming 8080.")
    picked = []
    for i in range(tries):
        since_a = node_a.mark()
        n = 64 << 10
        r = c.send("a1", cluster.SERVICE_VIP, cluster.SERVICE_PORT, nbytes=n)
        check(r["server_count"] == n and r["server_sha256"] == r["sha256"],
              f"connection {i + 1} to the service delivered {r['server_count']} of {n} bytes")
        out = node_a.wait_access("complete", since=since_a, direction="outbound",
                                 **{"src.addr": f"{a1.ip}:{r['local_port']}"})[0]
        ep = next((p for p in c.service_endpoints()
                   if out.get("dst.addr") == f"{p.ip}:{cluster.TARGET_PORT}"), None)
        check(ep is not None, f"connection {i + 1} went to {out.get('dst.addr')}, "
                              "not to an endpoint")
        picked.append(ep)
        say(f"connection {i + 1}: {n:,} bytes -> {ep.name} ({ep.node}, {ep.ip}:8080) over "
            f"{out.get('protocol')}")
    per_ep = {p.name: sum(1 for q in picked if q is p) for p in c.service_endpoints()}
    check(all(v > 0 for v in per_ep.values()),
          f"the connections did not reach every endpoint: {per_ep}")
    say("spread: " + ", ".join(f"{k} {v}" for k, v in per_ep.items()))
    report["vip"] = (tries, per_ep)

    # 5 ----------------------------------------------------------------------------------
    nplain = 1 << 20
    step("A pod outside the mesh: a3 -> b1",
         "a3 is not enrolled: it has no capture rules and no certificate, so its bytes "
         "leave in the clear. On arrival, b1's capture rules steer the connection to "
         "ztunnel's plaintext port 15006, which delivers it to b1. There is no identity to "
         "verify, so none is logged (a policy could refuse such connections).")
    before = redirect_count(b1, 15006)
    since_b = node_b.mark()
    with c.capture("node-a", "a3-to-b1") as pcap3:
        r = c.send("a3", "b1", nbytes=nplain, pattern=MARKER)
    check(r["server_count"] == nplain and r["server_sha256"] == r["sha256"],
          f"b1 received {r['server_count']} of {nplain} bytes from a3")
    line = access_line(node_b, "complete", since_b, direction="inbound",
                       **{"src.addr": f"{a3.ip}:{r['local_port']}"})
    rec = cluster.parse_access(line)
    check(rec.get("protocol") == "TCP" and not rec.get("src.identity"),
          f"expected a plaintext record without identity: {rec}")
    redirected = redirect_count(b1, 15006) - before
    check(redirected >= 1, "b1's REDIRECT-to-15006 rule did not match a3's connection")
    seen3 = pcap3.read_bytes().count(MARKER.encode())
    check(seen3 > 0, "a3's plaintext should be visible on the wire")
    say(f"b1 received {mib(r['server_count'])}; sha256 equal on both sides")
    say(f"b1's rule 'REDIRECT --to-ports 15006' matched {redirected} new connection(s)")
    say("node-b's access log (no src.identity: plain TCP):")
    for l in short_access(line, ("src.addr", "src.identity", "dst.addr", "dst.identity",
                                 "direction", "protocol", "bytes_sent")):
        say("  " + l)
    say(f"on the wire this time: \"{MARKER}\" seen {seen3:,} times (this is what step 3 "
        "rules out)")
    report["plain"] = nplain

    # 6 ----------------------------------------------------------------------------------
    step("An authorization policy: deny shop/web (a1's service account) access to b1",
         "We add a DENY policy to the cluster's config file and attach it to b1; both "
         "nodes reload it live. Policies are checked on the destination's node against the "
         "verified certificate of the caller, so a1 cannot talk its way around it.")
    for l in cluster.DENY_WEB.splitlines():
        say("  " + l)
    b1.policies = ["backend/deny-web"]
    c.set_policies(cluster.DENY_WEB)
    say("both nodes: reloaded the local config")
    since_b = node_b.mark()
    sink_before = len(c.sink_log("b1"))
    res = c.probe("a1", "b1", nbytes=4096)
    check(res["reply_bytes"] == 0, f"a1 -> b1 got an answer despite the policy: {res}")
    line = access_line(node_b, "denied", since_b, direction="inbound",
                       **{"src.identity": a1.identity})
    rec = cluster.parse_access(line)
    check(rec.get("response") == "401" and rec.get("reason") == "denied by backend/deny-web",
          f"unexpected deny record: {rec}")
    time.sleep(0.2)
    check(len(c.sink_log("b1")) == sink_before, "the denied connection reached b1's app")
    how = "connection reset (ECONNRESET)" if res["error"] == "ECONNRESET" else \
        f"closed {res['error']}".strip()
    say(f"a1 -> b1: {how}, no answer; b1's app saw no connection")
    say("node-b's access log:")
    for l in short_access(line, ("src.identity", "dst.addr", "dst.identity", "direction",
                                 "response", "reason")):
        say("  " + l)
    r = c.send("a2", "b1", nbytes=1 << 20)
    check(r["server_count"] == 1 << 20, f"a2 -> b1 should still work: {r}")
    say(f"a2 -> b1 (service account shop/cart) still works: {mib(r['server_count'])} "
        "delivered")
    report["deny"] = rec

    # 7 ----------------------------------------------------------------------------------
    step("Live metrics (Prometheus, node-b:15020/metrics)",
         "Each node counts connections and bytes per source and destination identity, in "
         "Istio's metric names; these are node-b's counters for a1 -> b1 (reporter="
         "\"destination\"). Each real series has 25 labels, three are shown here (all four "
         "also carry connection_security_policy=\"mutual_tls\"). In Istio's terms 'received' "
         "is what the client sent, 'sent' is the answer.")
    want = {"istio_tcp_connections_opened_total": "-", "istio_tcp_received_bytes_total": "-",
            "istio_tcp_sent_bytes_total": "-", "istio_tcp_connections_failed_total": "DENY"}
    deadline = time.monotonic() + 5
    while True:
        series = [(name, lab, v) for name, lab, v in
                  metric_series(http_get(node_b, 15020, "/metrics"))
                  if name in want and lab.get("reporter") == "destination"
                  and lab.get("source_workload") == "a1"
                  and lab.get("destination_workload") == "b1"
                  and lab.get("response_flags") == want[name]]
        got = {name: v for name, _, v in series}
        if got.get("istio_tcp_received_bytes_total", 0) >= nbytes and \
                got.get("istio_tcp_connections_failed_total", 0) >= 1:
            break
        check(time.monotonic() < deadline, f"node-b's metrics for a1 -> b1 are missing or "
                                           f"short: {got}")
        time.sleep(0.1)
    check(all(lab.get("connection_security_policy") == "mutual_tls" for _, lab, _ in series),
          "a1 -> b1 metrics not labelled mutual_tls")
    for name in want:
        lab, v = next((lab, v) for n, lab, v in series if n == name)
        short = ",".join(f'{k}="{lab[k]}"' for k in ("source_workload", "destination_workload",
                                                      "response_flags"))
        say(f"{name}{{{short}}} {int(v) if v == int(v) else v}", 4)
    say("(source_principal / destination_principal carry the two SPIFFE ids)", 4)

    # 8 ----------------------------------------------------------------------------------
    step("The admin endpoint (node-b, 127.0.0.1:15000/config_dump)",
         "The node's live state as JSON: workloads, services, policies, enrolled pods and "
         "the certificates it holds, one per service account of its pods. Here: the "
         "certificates.")
    dump = json.loads(http_get(node_b, 15000, "/config_dump"))
    certs = dump.get("certificates", [])
    want_ids = {p.identity for p in c.pods_on("node-b") if p.mesh}
    check({x.get("identity") for x in certs} >= want_ids,
          f"node-b's certificates {[x.get('identity') for x in certs]} miss some of "
          f"{sorted(want_ids)}")
    check(certs, "no certificates in node-b's config_dump")
    for x in certs:
        leaf = (x.get("certChain") or [{}])[0]
        say(f"{x.get('identity')}  {x.get('state')}  serial {leaf.get('serialNumber')}  "
            f"valid {leaf.get('validFrom')} .. {leaf.get('expirationTime')}", 2)
    check(all(x.get("state") == "Available" for x in certs), "a certificate is not available")

    # 9 ----------------------------------------------------------------------------------
    step("Stop the nodes",
         "SIGTERM makes a node process drain: it stops accepting, lets live connections "
         "finish, then exits 0. The logs are kept.")
    for n in c.nodes.values():
        code = n.stop()
        check(code == 0, f"{n.name} exited {code} on SIGTERM")
        last = n.log().strip().splitlines()[-1].split("\t")[-1]
        say(f"{n.name}: exit code {code} ({last})")
    return report


def summary(c: cluster.Cluster, report: dict, logs_dir: Path, t0: float) -> None:
    print("\nReport", flush=True)
    recs = [r for n in c.nodes.values() for r in n.access()]
    ids = sorted({r[k] for r in recs for k in ("src.identity", "dst.identity") if r.get(k)})
    say("identities used:", 4)
    for i in ids:
        pods = ", ".join(p.name for p in c.pods if p.mesh and p.identity == i)
        say(f"{i}  ({pods})")
    inbound = [r for r in recs if r["outcome"] == "complete" and r.get("direction") == "inbound"]
    tls = [r for r in inbound if r.get("protocol") == "HBONE"]
    plain = [r for r in inbound if r.get("protocol") != "HBONE"]
    total = sum(int(r.get("bytes_sent", 0)) + int(r.get("bytes_recv", 0)) for r in inbound)
    say(f"bytes moved: {total:,} over {len(inbound)} connections; "
        f"{len(tls)} in mutual TLS with verified identities, {len(plain)} plain (from a3)", 4)
    d = report["deny"]
    say(f"denied: {d['src.identity']} -> {d['dst.addr']} (b1), HTTP {d['response']}, "
        f"{d['reason']}", 4)
    tries, per_ep = report["vip"]
    say(f"service VIP: {tries} connections spread over "
        + ", ".join(f"{k} {v}" for k, v in per_ep.items()), 4)
    say(f"logs (node processes, agents, config, packet captures): {logs_dir}", 4)
    for f in sorted(logs_dir.iterdir()):
        say(f"{f.name}  ({f.stat().st_size:,} bytes)", 8)
    say(f"run time: {time.monotonic() - t0:.1f} s", 4)


def leftovers(prefix: str) -> list[str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    veth = f"ztv{os.getpid() % 10000}"
    return ([l.split()[0] for l in ns.splitlines() if l.startswith(prefix)] +
            [l.split(":")[1].strip() for l in links.splitlines()
             if l.split(":")[1].strip().startswith((veth, "ztbr"))])


def main() -> int:
    ap = argparse.ArgumentParser(description="ztunnel mesh demo on a simulated cluster")
    ap.add_argument("--ztunnel", default=os.environ.get(
        "ZTUNNEL_BIN", str(REPO / "build" / "ztunnel" / "app" / "ztunnel")),
        help="the node binary (default: $ZTUNNEL_BIN or build/ztunnel/app/ztunnel)")
    ap.add_argument("--agent", default=os.environ.get(
        "ZTUNNEL_AGENT_BIN", str(REPO / "build" / "ztunnel" / "agent" / "ztunnel-agent")),
        help="the enrollment agent (default: $ZTUNNEL_AGENT_BIN or "
             "build/ztunnel/agent/ztunnel-agent)")
    args = ap.parse_args()

    problems = []
    if os.geteuid() != 0:
        problems.append("the demo needs root: it creates network namespaces and iptables rules")
    for what, path in (("ztunnel", args.ztunnel), ("ztunnel-agent", args.agent)):
        if not os.access(path, os.X_OK):
            problems.append(f"{what} binary not found or not executable at {path} "
                            "(run `make build`)")
    for tool in ("ip", "iptables-save", "tcpdump"):
        if not shutil.which(tool):
            problems.append(f"`{tool}` is not installed (scripts/setup.sh installs it)")
    if problems:
        for p in problems:
            print(f"demo: {p}", file=sys.stderr)
        return 1
    os.environ["ZTUNNEL_BIN"] = str(Path(args.ztunnel).resolve())
    os.environ["ZTUNNEL_AGENT_BIN"] = str(Path(args.agent).resolve())

    def too_long(_sig, _frame):
        raise TimeoutError(f"the demo did not finish within {DEADLINE_S} s")
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(DEADLINE_S)

    print("ztunnel demo: a service mesh without sidecars.")
    print(textwrap.fill(
        "One ztunnel process per node gives every pod on that node an identity, encryption "
        "between nodes, load balancing, access policy and telemetry, without a proxy inside "
        "any pod. Below, a small cluster is simulated on this machine with network "
        "namespaces; the real ztunnel and enrollment agent run in it, real traffic goes "
        "through, and everything is removed at the end.", WIDTH))

    t0 = time.monotonic()
    logs_dir = Path(f"/tmp/ztunnel-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    work = Path(tempfile.mkdtemp(prefix="zt-demo-"))
    code, prefix = 1, ""
    try:
        with ztnet.Topology("demo") as topo:
            prefix = topo.prefix
            topo.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
            c = None
            try:
                c = cluster.Cluster(topo, work)
                report = run(c, logs_dir, t0)
                save_logs(c, work, logs_dir)
                summary(c, report, logs_dir, t0)
                code = 0
            finally:
                if code != 0:
                    save_logs(c, work, logs_dir)
                print("\nTearing down: processes, namespaces, links and their rules ...",
                      flush=True)
    except KeyboardInterrupt:
        print("\ndemo interrupted (Ctrl-C); everything has been torn down", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure gets one clear message
        n, title = _step["n"], _step["title"]
        detail = str(e).strip().splitlines() or [type(e).__name__]
        if len(detail) > 25:
            detail = detail[:5] + ["..."] + detail[-20:]
        where = f"step {n} ({title})" if n else "setting up the cluster"
        print(f"\ndemo FAILED in {where}:", file=sys.stderr)
        print(f"  {type(e).__name__}: " + "\n  ".join(detail), file=sys.stderr)
        if logs_dir.exists():
            print(f"  logs kept in {logs_dir}", file=sys.stderr)
        print("  everything has been torn down", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    left = leftovers(prefix)
    if left:
        print(f"demo FAILED: left behind after teardown: {left}", file=sys.stderr)
        return 1
    print(f"Done: nothing left behind (no namespace, link or process of this run). "
          f"Total {time.monotonic() - t0:.1f} s.")
    print("Next: `make test` runs every test; `make bench` measures it; the logs above "
          "show every connection.")
    return code


if __name__ == "__main__":
    sys.exit(main())
