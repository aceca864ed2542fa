"""The node process's HTTP endpoints under attack (RELIABILITY.md "Overload"): each of
admin (15000), metrics (15020) and readiness (15021) has its own thread, connection
budget and timeouts, so slowloris on two ports does not fail the third's probes, a
scrape flood is answered (200 or 503, never dropped) and counted, and afterwards the
process is back where it started and drains cleanly on SIGTERM.

One node-level ztunnel with --local-config runs in a namespace of its own; every
client runs inside that namespace on loopback (tools/admin_load.py).
"""
import json
import os
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import ztnet
from cluster import PY, http_request

ADMIN, METRICS, READINESS = 15000, 15020, 15021
LOAD = Path(__file__).resolve().parent / "tools" / "admin_load.py"
BUDGET = 64  # HttpLimits::max_connections

CONFIG = """
workloads:
- uid: default/app
  name: app
  namespace: default
  serviceAccount: app
  workloadIps: [10.79.0.2]
  protocol: HBONE
  node: node-a
"""


def start_node(topo, tmp_path: Path) -> tuple[ztnet.Netns, ztnet.Ztunnel]:
    ns = topo.netns("node")
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    zt = ztnet.Ztunnel(ns, tmp_path / "zt.log", "--local-config", str(config), "--ca-dir",
                       str(tmp_path / "ca"), "--ca-generate", "--node-name", "node-a",
                       "--workers", "1", "--inbound-listen", "127.0.0.1:15008",
                       "--inbound-plaintext-listen", "127.0.0.1:15006")
    for port in (ADMIN, METRICS, READINESS):
        ns.wait_listening(port)
    return ns, zt


def scrape(ns: ztnet.Netns) -> dict:
    """Samples by name, labels as a sorted tuple -> value."""
    code, body = http_request(ns, "127.0.0.1", METRICS, "/metrics")
    assert code == 200, f"/metrics: {code} {body[:300]}"
    out: dict = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def counter(samples: dict, name: str, **labels) -> float:
    want = tuple(sorted(labels.items()))
    return samples.get(name, {}).get(want, 0.0)


def rejected(samples: dict, endpoint: str, reason: str) -> float:
    return counter(samples, "ztunnel_admin_connections_rejected_total", endpoint=endpoint,
                   reason=reason)


def wait_quiet(ns: ztnet.Netns, timeout: float = 20.0) -> dict:
    """Scrapes until no endpoint has a connection open but the scrape's own."""
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(ns)
        active = {ep: counter(s, "ztunnel_admin_connections_active", endpoint=ep)
                  for ep in ("admin", "metrics", "readiness")}
        if active == {"admin": 0, "metrics": 1, "readiness": 0}:
            return s
        assert time.monotonic() < deadline, f"connections still open: {active}"
        time.sleep(0.2)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_load(ns: ztnet.Netns, *args: str) -> dict:
    out = ns.run(PY, str(LOAD), *args).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_endpoints_stay_isolated_answer_every_scrape_and_recover(topo, tmp_path):
    ns, zt = start_node(topo, tmp_path)
    # Warm every endpoint once, then take the baseline.
    assert http_request(ns, "127.0.0.1", READINESS, "/healthz/ready")[0] == 200
    assert http_request(ns, "127.0.0.1", ADMIN, "/config_dump")[0] == 200
    before = wait_quiet(ns)
    rss_before, fds_before = rss_kib(zt.pid), open_fds(zt.pid)

    # (a) Slowloris, more than the budget, on admin and metrics; readiness probes meanwhile.
    loris = BUDGET + 16
    r = run_load(ns, "slowloris", "--loris", f"{ADMIN}:{loris}", "--loris", f"{METRICS}:{loris}",
                 "--probe", str(READINESS), "--probes", "40", "--interval", "0.15")
    probes = r["probes"]
    latencies = [p["latency"] for p in probes]
    print(f"\nreadiness under slowloris ({loris} on {ADMIN} and {METRICS}): {len(probes)} probes, "
          f"max {max(latencies) * 1000:.1f} ms, "
          f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; slow clients: "
          f"{r['loris']}")
    assert len(probes) == 40
    bad = [p for p in probes if p["status"] != 200 or not p["complete"]]
    assert not bad, f"probes failed: {bad[:5]}"
    assert all(p["body"] == "ready\n" for p in probes)
    slow = [p for p in probes if p["latency"] >= 0.1]
    assert not slow, f"probes slower than 100 ms: {[round(p['latency'], 3) for p in slow]}"
    after_loris = wait_quiet(ns)
    for ep in ("admin", "metrics"):
        # The slow connections filled the budget (the rest were refused at once) and
        # were closed, at the header timeout or to make room for a newer client.
        assert rejected(after_loris, ep, "budget") - rejected(before, ep, "budget") >= loris - BUDGET
        closed_slow = (rejected(after_loris, ep, "header_timeout") +
                       rejected(after_loris, ep, "slow_headers"))
        assert closed_slow >= BUDGET, ep
    assert rejected(after_loris, "readiness", "budget") == 0
    assert rejected(after_loris, "readiness", "header_timeout") == 0
    assert (counter(after_loris, "ztunnel_admin_requests_total", endpoint="readiness") -
            counter(before, "ztunnel_admin_requests_total", endpoint="readiness")) == 40

    # (b) 1,000 concurrent scrapes: each gets a whole 200 or a 503, and the 503s are
    # exactly what the counter says was refused. First each scrape sending as soon as it
    # is connected, then all connected before any sends (so the budget surely fills).
    last = after_loris
    for mode in ("send-on-connect", "connect-first"):
        extra = ["--connect-first"] if mode == "connect-first" else []
        f = run_load(ns, "flood", "--port", str(METRICS), "--count", "1000", "--path",
                     "/metrics", *extra)
        now = wait_quiet(ns)
        counted = rejected(now, "metrics", "budget") - rejected(last, "metrics", "budget")
        # A connected client that has sent nothing while the budget is full looks like a
        # slow-header sender: on a loaded machine a few connect-first clients are evicted
        # (closed without an answer) to make room, and counted as such.
        evicted = sum(rejected(now, "metrics", r) - rejected(last, "metrics", r)
                      for r in ("slow_headers", "header_timeout"))
        print(f"1000 concurrent scrapes ({mode}): {f['ok']} answered 200, {f['busy']} refused "
              f"503, {f['dropped']} dropped, {f['other']} other, {f['connect_failed']} not "
              f"connected; rejected counter +{counted:.0f}, evicted +{evicted:.0f}; "
              f"{f['seconds']:.2f} s")
        assert f["other"] == 0 and f["connect_failed"] == 0, f["errors"]
        assert f["dropped"] == evicted, f["errors"]  # every close without an answer counted
        assert f["ok"] + f["busy"] + f["dropped"] == 1000
        assert f["ok"] >= BUDGET
        assert counted == f["busy"]
        last = now
    assert f["busy"] + f["dropped"] >= 1000 - BUDGET - 1  # connect-first: all but the budget
    assert rejected(last, "metrics", "accept_error") == 0

    # (c) Back to the baseline, then a clean drain.
    rss_after, fds_after = rss_kib(zt.pid), open_fds(zt.pid)
    print(f"RSS before {rss_before} KiB, after {rss_after} KiB; fds before {fds_before}, "
          f"after {fds_after}")
    assert fds_after == fds_before
    # Bounded, not zero: the endpoint threads keep their malloc arenas (about 0.5 MiB).
    assert rss_after <= rss_before + ztnet.rss_budget(2 * 1024), (rss_before, rss_after)
    assert zt.stop() == 0


def test_slowloris_on_every_port_at_once_is_survived(topo, tmp_path):
    """Issue 15's acceptance: slowloris on all three ports at once, readiness included.
    Every probe is answered at once, and readiness never flips: a full budget of slow
    header senders makes room for a client that sends its request at once, except for
    the moments when every slow connection is younger than slow_header_grace (the
    attacker reopening a batch): a probe then gets 503, never three in a row (kubelet's
    default failureThreshold). Every port answers normally after, memory and fds come
    back and SIGTERM drains."""
    ns, zt = start_node(topo, tmp_path)
    assert http_request(ns, "127.0.0.1", READINESS, "/healthz/ready")[0] == 200
    before = wait_quiet(ns)
    rss_before, fds_before = rss_kib(zt.pid), open_fds(zt.pid)
    loris = BUDGET + 16
    r = run_load(ns, "slowloris", "--loris", f"{ADMIN}:{loris}", "--loris", f"{METRICS}:{loris}",
                 "--loris", f"{READINESS}:{loris}", "--probe", str(READINESS), "--probes", "40",
                 "--interval", "0.1")
    probes = r["probes"]
    statuses = sorted({p["status"] for p in probes})
    worst = max(p["latency"] for p in probes)
    print(f"\nslowloris on all three ports ({loris} each): probe statuses {statuses}, "
          f"slowest {worst * 1000:.1f} ms; {r['loris']}")
    assert all(p["status"] in (200, 503) and p["complete"] for p in probes), probes[:5]
    assert worst < 0.1, f"a probe took {worst * 1000:.0f} ms"
    codes = "".join("o" if p["status"] == 200 else "x" for p in probes)
    print(f"probe outcomes (o: 200, x: 503): {codes}")
    assert "xxx" not in codes, f"three probes in a row refused: {codes}"
    assert codes.count("o") >= 0.8 * len(codes), codes
    after = wait_quiet(ns)
    for ep in ("admin", "metrics", "readiness"):
        assert rejected(after, ep, "budget") - rejected(before, ep, "budget") >= loris - BUDGET, ep
    # Each probe took a slow client's place.
    assert rejected(after, "readiness", "slow_headers") >= 1
    # The slow clients are gone: every port answers at once.
    assert http_request(ns, "127.0.0.1", READINESS, "/healthz/ready") == (200, "ready\n")
    assert http_request(ns, "127.0.0.1", ADMIN, "/config_dump")[0] == 200
    assert open_fds(zt.pid) == fds_before
    assert rss_kib(zt.pid) <= rss_before + ztnet.rss_budget(2 * 1024), (rss_before, rss_kib(zt.pid))
    assert zt.stop() == 0
