"""Observability of the simulated cluster (cluster.py): the Prometheus metrics on 15020
checked against the bytes that really crossed, the admin endpoints on 15000, the access
log (text and JSON), a policy change that closes a live connection, and the SIGTERM
drain with a live 1 GiB transfer (DESIGN §4 "Ports", "Telemetry", "Shutdown").

    node-a: a1 shop/web   a2 shop/cart (echo endpoint)   a3 legacy (not in the mesh)
    node-b: b1 backend/api   b2 shop/cart (echo endpoint)   b3 backend/audit
"""
import base64
import json
import re
import signal
import subprocess
import time
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

import cluster
from cluster import PY, TOOLS
from ztnet import istioctl_ztunnel_config
# The harness's fixtures: a cluster factory on the test's topology, and the check that
# no namespace, link or socket directory of this run is left behind after each test.
from test_mesh import assert_exact, mesh, nothing_left_behind  # noqa: F401

METRICS_PORT, ADMIN_PORT = 15020, 15000


# Every workload of namespace backend (b1, b3) refuses shop/web (a1).
DENY_WEB_IN_BACKEND = """
policies:
- name: deny-web-ns
  namespace: backend
  scope: Namespace
  action: Deny
  rules:
  - - - serviceAccounts: [{namespace: shop, serviceAccount: web}]
"""

ACCESS_KEYS = ("src.addr", "src.workload", "src.namespace", "src.identity", "dst.addr",
               "dst.workload", "dst.namespace", "dst.identity", "direction", "protocol",
               "bytes_sent", "bytes_recv", "duration")


# --- helpers -------------------------------------------------------------------------------

def scrape(node: cluster.Node, path: str = "/metrics") -> dict[str, list]:
    """The node's metrics, read with prometheus_client's text-format parser: samples by
    sample name (counters keep their _total)."""
    code, body = node.http(path, port=METRICS_PORT)
    assert code == 200, f"{node.name} {path}: {code} {body[:500]}"
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def series(samples: dict, name: str, **labels) -> list:
    """The samples of `name` whose labels include every given label."""
    return [s for s in samples.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())]


def value(samples: dict, name: str, **labels) -> float:
    return sum(s.value for s in series(samples, name, **labels))


def reply_bytes(r: dict) -> int:
    """What sink.py sends back on a connection: "<sha256 hex> <count>\\n"."""
    return len(f"{r['server_sha256']} {r['server_count']}\n".encode())


def log_time(line: str) -> float:
    """The wall-clock time of a text log line (its first, RFC 3339 field)."""
    stamp = line.split("\t", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


def pair_labels(src: cluster.Pod, dst: cluster.Pod, reporter: str) -> dict:
    return {"reporter": reporter, "source_workload": src.name,
            "source_workload_namespace": src.namespace, "source_principal": src.identity,
            "destination_workload": dst.name, "destination_workload_namespace": dst.namespace,
            "destination_principal": dst.identity,
            "connection_security_policy": "mutual_tls"}


# --- 1. metrics ------------------------------------------------------------------------------

def test_metrics_count_exactly_what_crossed_at_both_reporters(mesh):
    c = mesh(cluster.DENY_WEB, workload_policies={"b3": ["backend/deny-web"]})
    a1, a2, b1, b2, b3 = (c.pod(n) for n in ("a1", "a2", "b1", "b2", "b3"))
    node_a, node_b = c.node("node-a"), c.node("node-b")
    for p in ("b1", "a2", "b2", "b3"):
        c.start_sink(p)
    base_a, base_b = scrape(node_a), scrape(node_b)

    # K connections a1 -> b1 (cross node, HBONE) with known sizes each way.
    sizes = [1, 1000, 65536 + 3, 1 << 20, 3_000_001]
    up = down = 0
    since_a, since_b = node_a.mark(), node_b.mark()
    for n in sizes:
        r = c.send("a1", "b1", nbytes=n)
        assert_exact(r, n)
        up += n
        down += reply_bytes(r)
    k = len(sizes)
    # Counters move when a connection ends; the access line is written right after.
    node_a.wait_access("complete", since=since_a, count=k, direction="outbound",
                       **{"dst.workload": "b1"})
    node_b.wait_access("complete", since=since_b, count=k, direction="inbound",
                       **{"dst.workload": "b1"})

    for node, base, reporter in ((node_a, base_a, "source"), (node_b, base_b, "destination")):
        m = scrape(node)
        want = pair_labels(a1, b1, reporter)
        opened = series(m, "istio_tcp_connections_opened_total", **want)
        assert len(opened) == 1, f"{node.name}: series for a1 -> b1: {opened}"
        labels = opened[0].labels
        assert labels["request_protocol"] == "tcp" and labels["response_flags"] == "-", labels
        assert labels["destination_service"] == "unknown", labels   # dialed a pod, not a VIP
        assert labels["source_cluster"] == cluster.CLUSTER_ID, labels
        assert labels["source_app"] == "a1" and labels["destination_app"] == "b1", labels
        got = {name: value(m, name, **want) - value(base, name, **want)
               for name in ("istio_tcp_connections_opened_total",
                            "istio_tcp_connections_closed_total",
                            "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")}
        assert got == {"istio_tcp_connections_opened_total": k,
                       "istio_tcp_connections_closed_total": k,
                       "istio_tcp_received_bytes_total": up,
                       "istio_tcp_sent_bytes_total": down}, f"{node.name} ({reporter}): {got}"
        # Each node reports a1 -> b1 once, as its own side only.
        other = "destination" if reporter == "source" else "source"
        assert not series(m, "istio_tcp_connections_opened_total",
                          **pair_labels(a1, b1, other)), node.name

    # One connection through the service VIP: the source reporter names the service.
    r = c.send("a1", cluster.SERVICE_VIP, cluster.SERVICE_PORT, nbytes=12345)
    assert_exact(r, 12345)
    got_it = [p for p in (a2, b2) if c.sink_log(p.name)]
    assert len(got_it) == 1, {p.name: c.sink_log(p.name) for p in (a2, b2)}
    ep = got_it[0]
    rec = node_a.wait_access("complete", direction="outbound",
                             **{"src.addr": f"{a1.ip}:{r['local_port']}"})[0]
    assert rec["dst.service"] == cluster.SERVICE_HOST, rec
    m = scrape(node_a)
    svc = {**pair_labels(a1, ep, "source"), "destination_service": cluster.SERVICE_HOST,
           "destination_service_name": cluster.SERVICE_NAME,
           "destination_service_namespace": cluster.SERVICE_NS}
    assert value(m, "istio_tcp_connections_opened_total", **svc) == 1, \
        series(m, "istio_tcp_connections_opened_total", source_workload="a1")
    assert value(m, "istio_tcp_connections_closed_total", **svc) == 1
    assert value(m, "istio_tcp_received_bytes_total", **svc) == 12345
    assert value(m, "istio_tcp_sent_bytes_total", **svc) == reply_bytes(r)

    # A connection b3's DENY policy refuses: failed with response_flags DENY at the
    # destination reporter, never opened.
    res = c.probe("a1", "b3")
    assert res["reply_bytes"] == 0, res
    node_b.wait_access("denied", **{"dst.workload": "b3"})
    m = scrape(node_b)
    deny = {**pair_labels(a1, b3, "destination"), "response_flags": "DENY"}
    assert value(m, "istio_tcp_connections_failed_total", **deny) == 1, \
        series(m, "istio_tcp_connections_failed_total")
    assert value(m, "istio_tcp_connections_opened_total",
                 **pair_labels(a1, b3, "destination")) == 0
    assert c.sink_log("b3") == []

    # Enrolled pods: node-a serves a1 and a2 (a3 is out of the mesh), node-b three.
    for node, want in ((node_a, 2), (node_b, 3)):
        m = scrape(node)
        assert value(m, "workload_manager_active_proxy_count") == want, node.name
        assert value(m, "workload_manager_proxies_started_total") == want, node.name
        assert value(m, "workload_manager_proxies_stopped_total") == 0, node.name
    since = node_b.mark()
    c.unenroll("b3")
    node_b.wait_log("stopped serving pod " + b3.zds_uid, since=since)
    m = scrape(node_b)
    assert value(m, "workload_manager_active_proxy_count") == 2
    assert value(m, "workload_manager_proxies_stopped_total") == 1

    # Config reloads: a rejected file counts as rejected, a good one as applied.
    before = {n.name: scrape(n) for n in (node_a, node_b)}
    marks = {n.name: n.mark() for n in (node_a, node_b)}
    c.write_config(c.config_yaml() + "bogus: 1\n")
    for n in (node_a, node_b):
        n.wait_log("rejected the new local config", since=marks[n.name])
    for n in (node_a, node_b):
        m, b = scrape(n), before[n.name]
        for result, delta in (("rejected", 1), ("applied", 0)):
            name = "ztunnel_local_config_reloads_total"
            assert value(m, name, result=result) - value(b, name, result=result) == delta, \
                (n.name, result, series(m, name))
    marks = {n.name: n.mark() for n in (node_a, node_b)}
    c.write_config(c.config_yaml() + "# touched\n")
    for n in (node_a, node_b):
        n.wait_log("reloaded the local config", since=marks[n.name])
        m, b = scrape(n), before[n.name]
        name = "ztunnel_local_config_reloads_total"
        assert value(m, name, result="applied") - value(b, name, result="applied") == 1
        assert value(m, name, result="rejected") - value(b, name, result="rejected") == 1

    # Process metrics, and the same exposition on /stats/prometheus.
    for n in (node_a, node_b):
        m = scrape(n, "/stats/prometheus")
        assert value(m, "process_resident_memory_bytes") > 0, n.name
        assert value(m, "process_open_fds") > 0, n.name
        assert value(m, "process_cpu_seconds_total") > 0, n.name
        assert series(m, "istio_tcp_connections_opened_total", reporter="source" if
                      n is node_a else "destination", source_workload="a1")


# --- 2. admin --------------------------------------------------------------------------------

def test_admin_config_dump_logging_and_quitquitquit(mesh):
    c = mesh()
    node_a, node_b = c.node("node-a"), c.node("node-b")
    now = time.time()
    for node in (node_a, node_b):
        code, body = node.http("/config_dump")
        assert code == 200, (code, body)
        dump = json.loads(body)
        local = [p for p in c.pods_on(node.name) if p.mesh]
        workloads = {w["name"]: w for w in dump["workloads"]}
        for p in local:
            w = workloads.get(p.name)
            assert w is not None, f"{node.name}: {p.name} not in {list(workloads)}"
            assert (w["uid"], w["namespace"], w["serviceAccount"], w["node"], w["protocol"],
                    w["workloadIps"]) == (p.uid, p.namespace, p.service_account, node.name,
                                          "HBONE", [p.ip]), w
        assert "a3" not in workloads
        services = [s for s in dump["services"] if s["hostname"] == cluster.SERVICE_HOST]
        assert len(services) == 1, dump["services"]
        assert services[0]["vips"] == ["/" + cluster.SERVICE_VIP], services  # network/ip
        assert services[0]["ports"] == {str(cluster.SERVICE_PORT): cluster.TARGET_PORT}, services
        # One certificate per identity of this node's pods, valid, expiring in ~24 h.
        certs = {x["identity"]: x for x in dump["certificates"]}
        assert set(certs) == {p.identity for p in local}, (node.name, list(certs))
        for cert in certs.values():
            assert cert["state"] == "Available", cert
            assert len(cert["certChain"]) == 1 and len(cert["rootCerts"]) == 1, cert
            leaf = cert["certChain"][0]
            exp = datetime.strptime(leaf["expirationTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc).timestamp()
            assert now + 3600 < exp <= now + 24 * 3600 + 60, cert
            assert "BEGIN CERTIFICATE" in base64.b64decode(leaf["pem"]).decode(), leaf
            assert leaf["serialNumber"].isdigit(), leaf
        # Istio's workloadState: the enrolled pods by uid.
        pods = {(uid, p["info"]["name"], p["info"]["namespace"], p["state"])
                for uid, p in dump["workloadState"].items()}
        assert pods == {(p.zds_uid, p.name, p.namespace, "Up") for p in local}, pods
        # istioctl reads it: its own parser and printers list what the node holds.
        printed = istioctl_ztunnel_config(body)
        for p in local:
            assert re.search(rf"^{p.namespace}\s+{p.name}\s+{p.ip}\s+{node.name}\s+None\s+HBONE$",
                             printed, re.M), printed
        svc = re.search(rf"\s{re.escape(cluster.SERVICE_VIP)}\s+None\s+(\d+)/(\d+)$", printed, re.M)
        assert svc and svc[1] == svc[2] != "0", printed
        for ident in certs:
            for kind in ("Leaf", "Root"):
                assert re.search(rf"^{re.escape(ident)}\s+{kind}\s+Available\s+true\s", printed,
                                 re.M), printed

    # /logging: one level for every scope.
    assert node_a.http("/logging") == (200, "current log level is info\n")
    since = node_a.mark()
    assert node_a.http("/logging?level=debug", method="POST") == \
        (200, "current log level is debug\n")
    node_a.wait_log("log level set to debug through /logging", since=since)
    assert node_a.http("/logging") == (200, "current log level is debug\n")
    code, body = node_a.http("/logging?level=chatty", method="POST")
    assert code == 400 and 'unknown level "chatty"' in body, (code, body)
    assert node_a.http("/logging") == (200, "current log level is debug\n")
    assert node_b.http("/logging") == (200, "current log level is info\n")
    # Debug lines appear now, on node-a only: a passthrough connection (a1 -> a3, out of
    # the mesh) logs "outbound ... connected" at debug; b1 -> a3 does the same on node-b.
    c.start_sink("a3")
    since_a, since_b = node_a.mark(), node_b.mark()
    assert_exact(c.send("a1", "a3", nbytes=4096), 4096)
    assert_exact(c.send("b1", "a3", nbytes=4096), 4096)
    node_a.wait_access("complete", since=since_a)
    node_b.wait_access("complete", since=since_b)
    assert node_a.lines("\tdebug\tproxy\toutbound ", "connected", since=since_a), \
        node_a.log()[since_a:]
    assert not node_b.lines("\tdebug\t", since=since_b), node_b.log()[since_b:]

    # Admin listens on the node's localhost only: not on the node's addresses, so no pod
    # reaches it; metrics (0.0.0.0) are reachable the same ways, which shows the path works.
    a1, a3 = c.pod("a1"), c.pod("a3")
    assert node_a.http("/config_dump", host=node_a.ip)[0] == 0
    assert node_a.http("/metrics", host=node_a.ip, port=METRICS_PORT)[0] == 200
    for pod in (a3, a1):   # a3 directly (not captured); a1 through its capture rules
        for host in (node_a.gateway, node_a.ip):
            code, body = cluster.http_request(pod.ns, host, ADMIN_PORT, "/config_dump")
            assert code == 0 and "workloads" not in body, (pod.name, host, code, body)
            code, body = cluster.http_request(pod.ns, host, METRICS_PORT, "/metrics")
            assert code == 200 and "process_open_fds" in body, (pod.name, host, code)
    direct = cluster.http_request(a3.ns, node_a.gateway, ADMIN_PORT, "/config_dump")
    assert "Connection refused" in direct[1], direct

    # /quitquitquit: POST only; then the process drains and exits 0.
    assert node_b.http("/quitquitquit")[0] == 405
    assert node_b.running
    since = node_b.mark()
    t0 = time.monotonic()
    assert node_b.http("/quitquitquit", method="POST") == (200, "OK\n")
    code = node_b.zt.proc.wait(timeout=10)
    took = time.monotonic() - t0
    print(f"/quitquitquit: exited {code} after {took:.2f} s")
    assert code == 0, node_b.log()
    assert took < 5.0, f"exit took {took:.1f} s"
    node_b.wait_log("POST /quitquitquit: shutting down as on SIGTERM", since=since)
    node_b.wait_log("drained; exiting", since=since)
    assert node_a.running


# --- 3. policy change closes a live connection -------------------------------------------------

def test_deny_added_while_connection_is_live_closes_it_within_a_second(mesh, tmp_path):
    c = mesh()
    a1, b1 = c.pod("a1"), c.pod("b1")
    node_b = c.node("node-b")
    c.start_sink("b1")
    # The connection to be denied: a1 -> b1 keeps sending 16 KiB every 20 ms.
    hold = a1.ns.spawn(PY, str(TOOLS / "hold.py"), b1.ip, str(cluster.TARGET_PORT),
                       "--max", "20", stdout=subprocess.PIPE)
    first = json.loads(hold.stdout.readline())
    assert first["connected"], first
    # A connection the new policy allows (a2 is shop/cart): paused midway, it survives.
    total = 4 << 20
    resume = tmp_path / "resume"
    keep = c.spawn_send("a2", "b1", cluster.TARGET_PORT, total,
                        "--pause-after", str(total // 2), "--pause-file", str(resume))
    assert "paused_at" in keep.stdout.readline().decode()
    time.sleep(0.5)
    assert hold.poll() is None, hold.stdout.read()

    since = node_b.mark()
    written = time.time()
    c.set_policies(DENY_WEB_IN_BACKEND)
    reload_line = node_b.wait_line("reloaded the local config", since=since)[0]
    reloaded = log_time(reload_line)
    out, _ = hold.communicate(timeout=10)
    end = json.loads(out.decode().strip().splitlines()[-1])
    assert end["how"] in ("EOF", "ECONNRESET", "EPIPE"), end
    assert end["sent"] > 0, end
    assert written <= end["ended"], (written, end)
    print(f"denied live connection ended {end['ended'] - reloaded:+.3f} s after the reload "
          f"was logged ({end['how']}, {end['sent']} bytes sent)")
    assert end["ended"] - reloaded <= 1.0, \
        f"the denied connection ended {end['ended'] - reloaded:.3f} s after the reload"
    line = node_b.wait_line("connection closed by a policy change", since=since)[0]
    assert f"src.identity={a1.identity}" in line, line
    assert f"dst.addr={b1.ip}:{cluster.TARGET_PORT}" in line, line
    assert "deny-web-ns" in line, line
    assert len(node_b.lines("connection closed by a policy change", since=since)) == 1

    # The allowed live connection finishes byte-exact; a new a1 -> b1 is refused.
    resume.touch()
    out, _ = keep.communicate(timeout=30)
    assert_exact(json.loads(out.decode().strip().splitlines()[-1]), total)
    assert c.probe("a1", "b1")["reply_bytes"] == 0
    node_b.wait_access("denied", since=since, **{"src.identity": a1.identity})
    assert [e["count"] for e in c.sink_log("b1") if e["count"] == total] == [total]


# --- 4. SIGTERM drain with a live 1 GiB transfer -----------------------------------------------

def test_sigterm_drains_a_live_1gib_transfer_and_refuses_new_connections(mesh, tmp_path):
    drain = 60
    c = mesh(node_args=("--drain-timeout", f"{drain}s"))
    a1, b1 = c.pod("a1"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    c.start_sink("b1")
    c.start_sink("a2")
    total = 1 << 30
    resume = tmp_path / "resume"
    live = c.spawn_send("a1", "b1", cluster.TARGET_PORT, total,
                        "--pause-after", str(total // 4), "--pause-file", str(resume))
    assert json.loads(live.stdout.readline())["paused_at"] >= total // 4

    # The source node is told to stop mid-transfer (as the DaemonSet pod being replaced).
    since = node_a.mark()
    t_term = time.monotonic()
    node_a.zt.proc.send_signal(signal.SIGTERM)
    node_a.wait_log("received SIGTERM: draining", since=since)
    time.sleep(0.3)
    # Draining: not ready, and the pods' listeners are closed at once, so a new connection
    # from a node-a pod is refused (its capture rules stay: it is not sent around the mesh).
    code, body = node_a.readiness()
    assert code == 500 and "draining" in body, (code, body)
    for src, dst in (("a1", "b1"), ("a2", "b1"), ("a1", "a2")):
        res = c.probe(src, dst)
        assert not res["connected"] and res["error"] == "ECONNREFUSED", (src, dst, res)
    # Into node-a's pods too: node-b's tunnel to a2:15008 is refused, so is b1's connection.
    since_b = node_b.mark()
    res = c.probe("b1", "a2")
    assert res["reply_bytes"] == 0, res
    rec = node_b.wait_access("failed", since=since_b, direction="outbound")[0]
    assert rec["dst.addr"] == f"{c.pod('a2').ip}:{cluster.TARGET_PORT}", rec
    assert "ISTIO_OUTPUT" in a1.ns.run("iptables-save").stdout
    assert c.sink_log("b1") == [] and c.sink_log("a2") == []
    assert node_a.running, node_a.log()

    # The live transfer finishes byte-exact; then the process exits 0, well before the
    # drain deadline.
    resume.touch()
    t_resume = time.monotonic()
    out, _ = live.communicate(timeout=drain)
    t_done = time.monotonic()
    r = json.loads(out.decode().strip().splitlines()[-1])
    assert_exact(r, total)
    assert [e["count"] for e in c.sink_log("b1")] == [total]
    code = node_a.zt.proc.wait(timeout=drain)
    t_exit = time.monotonic()
    assert code == 0, node_a.log()[-4000:]
    print(f"1 GiB: resumed -> done {t_done - t_resume:.2f} s; exit {t_exit - t_done:.2f} s "
          f"after the transfer ended, {t_exit - t_term:.2f} s after SIGTERM")
    assert t_exit - t_done < 5.0, \
        f"exited {t_exit - t_done:.1f} s after the transfer ended (deadline {drain} s)"
    assert t_exit - t_term < drain
    rec = node_a.access("complete", since=since, direction="outbound",
                        **{"src.addr": f"{a1.ip}:{r['local_port']}"})
    assert len(rec) == 1 and rec[0]["bytes_sent"] == str(total), rec
    assert not rec[0].get("error"), rec
    assert node_a.lines("drained; exiting", since=since)
    # The destination delivered all of it as one clean connection.
    done = node_b.wait_access("complete", direction="inbound", **{"dst.workload": "b1"})
    assert [d["bytes_sent"] for d in done] == [str(total)] and not done[0].get("error"), done


# --- 5. JSON logs ------------------------------------------------------------------------------

def test_json_log_format_every_line_is_an_object_with_the_access_fields(mesh):
    c = mesh(cluster.DENY_WEB, workload_policies={"b3": ["backend/deny-web"]},
             node_args=("--log-format", "json"))
    a1, b1 = c.pod("a1"), c.pod("b1")
    node_a, node_b = c.node("node-a"), c.node("node-b")
    for p in ("b1", "a2", "b2", "b3"):
        c.start_sink(p)
    nbytes = 200_000
    r = c.send("a1", "b1", nbytes=nbytes)
    assert_exact(r, nbytes)
    v = c.send("a1", cluster.SERVICE_VIP, cluster.SERVICE_PORT, nbytes=777)
    assert_exact(v, 777)
    assert c.probe("a1", "b3")["reply_bytes"] == 0
    node_b.wait_access("denied")
    node_a.wait_access(count=3, direction="outbound")
    # A rejected reload whose error quotes a key with a quote, a backslash, a tab and a
    # non-ASCII letter: the line must still be one valid JSON object.
    weird = 'w\u00e9"ird\\key\t'
    marks = {n.name: n.mark() for n in (node_a, node_b)}
    c.write_config(c.config_yaml(extra_keys={"a2": {json.dumps(weird): "1"}}))
    for n in (node_a, node_b):
        n.wait_log("rejected the new local config", since=marks[n.name])

    access = {"node-a": [], "node-b": []}
    for node in (node_a, node_b):
        lines = [l for l in node.log().splitlines() if l.strip()]
        assert len(lines) > 5, lines
        for line in lines:
            obj = json.loads(line)   # every line, not only the access ones
            assert isinstance(obj, dict), line
            assert {"time", "level", "scope", "message"} <= set(obj), line
            if obj["scope"] == "access":
                access[node.name].append(obj)
        rejected = [json.loads(l)["message"] for l in lines if "rejected the new" in l]
        assert len(rejected) == 1 and f'unknown key "{weird}"' in rejected[0], rejected

    out = [o for o in access["node-a"] if o["src.addr"] == f"{a1.ip}:{r['local_port']}"]
    assert len(out) == 1, access["node-a"]
    o = out[0]
    assert o["message"] == "connection complete", o
    assert set(ACCESS_KEYS) <= set(o), sorted(set(ACCESS_KEYS) - set(o))
    assert (o["src.workload"], o["src.namespace"], o["src.identity"]) == \
        ("a1", "shop", a1.identity), o
    assert (o["dst.addr"], o["dst.workload"], o["dst.namespace"], o["dst.identity"]) == \
        (f"{b1.ip}:8080", "b1", "backend", b1.identity), o
    assert (o["direction"], o["protocol"]) == ("outbound", "HBONE"), o
    assert o["bytes_sent"] == nbytes and o["bytes_recv"] == reply_bytes(r), o  # numbers
    assert isinstance(o["duration"], str) and o["duration"].endswith("ms"), o

    inb = [o for o in access["node-b"] if o["message"] == "connection complete"
           and o["dst.workload"] == "b1"]
    assert len(inb) == 1 and set(ACCESS_KEYS) <= set(inb[0]), inb
    assert inb[0]["direction"] == "inbound" and inb[0]["bytes_sent"] == nbytes, inb

    vip = [o for o in access["node-a"] if o["src.addr"] == f"{a1.ip}:{v['local_port']}"]
    assert len(vip) == 1 and vip[0]["dst.service"] == cluster.SERVICE_HOST, vip
    assert vip[0]["bytes_sent"] == 777, vip

    denied = [o for o in access["node-b"] if o["message"] == "connection denied"]
    assert len(denied) == 1, access["node-b"]
    d = denied[0]
    assert d["response"] == 401 and d["reason"] == "denied by backend/deny-web", d
    assert d["src.identity"] == a1.identity and d["dst.workload"] == "b3", d
    src_side = [o for o in access["node-a"] if o.get("dst.workload") == "b3"]
    assert len(src_side) == 1 and "401" in src_side[0].get("error", ""), src_side
