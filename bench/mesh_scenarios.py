"""The measurements of bench/run, one simulated cluster (integration/cluster.py) each.

A scenario builds a two-node cluster in one mode — direct (no mesh), ambient (one node
process per node) or sidecar (one dedicated proxy per pod, same binary, same mTLS) —
measures, and tears it down (every namespace goes, also on errors). Traffic is
cross-node: client pod a1 on node-a, server pod b1 on node-b.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "integration"))
import cluster as cl  # noqa: E402

FORTIO = os.environ.get("FORTIO_BIN", "/opt/ztunnel-deps/fortio-v1.66.5/fortio")
ECHO_PORT, HTTP_PORT, IPERF_PORT, RELAY_PORT = 8078, 8080, 5201, 9000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PERCENTILES = ("p50", "p90", "p99", "p99.9")

# The reference relay: HAProxy in TCP mode on each node, a1 -> node-a -> node-b -> b1.
# Two user-space hops without TLS: what any proxy pair costs on this machine.
HAPROXY_CFG = """global
  nbthread 2
defaults
  mode tcp
  timeout connect 10s
  timeout client 1h
  timeout server 1h
frontend relay
  bind {bind}:{port}
  default_backend next
backend next
  server next {dst}
"""


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB of one process."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def proxy_pids(c: cl.Cluster) -> list[int]:
    """The proxy processes of the cluster's mode: node processes or sidecars."""
    if c.mode == "ambient":
        return [n.zt.pid for n in c.nodes.values() if n.zt is not None]
    if c.mode == "sidecar":
        return [p.sidecar.pid for p in c.pods if p.sidecar is not None]
    return []


class ProxyUsage:
    """CPU seconds of a set of processes over a window: `with ProxyUsage(pids) as u:`."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.cpu_seconds = self.wall_seconds = 0.0

    def __enter__(self):
        self._cpu0, self._t0 = sum(proc_cpu(p) for p in self.pids), time.monotonic()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            # Interrupted or failed: the processes may be gone already; let the error
            # through rather than hide it behind a missing /proc entry.
            return False
        self.cpu_seconds = sum(proc_cpu(p) for p in self.pids) - self._cpu0
        self.wall_seconds = time.monotonic() - self._t0
        return False


def memory(pids: list[int]) -> dict:
    mem = [proc_mem_kib(p) for p in pids]
    return {"rss_kib": sum(m[0] for m in mem), "pss_kib": sum(m[1] for m in mem)}


def make_pods(per_node: int) -> list:
    pods = []
    for node, net, prefix in (("node-a", 1, "a"), ("node-b", 2, "b")):
        for i in range(1, per_node + 1):
            pods.append(cl.Pod(f"{prefix}{i}", node, f"10.90.{net}.{10 + i}", "bench", f"sa{i}"))
    return pods


def build(mode: str, per_node: int) -> cl.Cluster:
    return cl.Cluster(mode=mode, pods=make_pods(per_node), workers=2)


def start_servers(c: cl.Cluster) -> None:
    """iperf3, a fortio TCP echo and a fortio HTTP server in pod b1."""
    b1 = c.pod("b1").ns
    b1.spawn("iperf3", "-s", "-p", str(IPERF_PORT), log=c.tmp / "iperf3.log")
    b1.spawn(FORTIO, "tcp-echo", "-tcp-port", str(ECHO_PORT), "-quiet",
             log=c.tmp / "fortio-echo.log")
    b1.spawn(FORTIO, "server", "-http-port", str(HTTP_PORT), "-grpc-port", "disabled",
             "-redirect-port", "disabled", "-quiet", log=c.tmp / "fortio-http.log")
    for port in (IPERF_PORT, ECHO_PORT, HTTP_PORT):
        b1.wait_listening(port)
    # The churn scenario opens thousands of connections a second: let the client reuse
    # TIME_WAIT ports and widen the range so it never runs out of source ports.
    for pod in ("a1", "b1"):
        c.pod(pod).ns.run("sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1",
                          "net.ipv4.ip_local_port_range=1024 65000")


def iperf(c: cl.Cluster, streams: int, seconds: float) -> float:
    """Gb/s received by b1 from a1."""
    out = c.pod("a1").ns.run("iperf3", "-c", c.pod("b1").ip, "-p", str(IPERF_PORT), "-t",
                             f"{seconds:g}", "-P", str(streams), "-J").stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def fortio(c: cl.Cluster, target: str, qps: int, seconds: float, conns: int = 16,
           extra: tuple = ()) -> dict:
    """One fortio load from a1; percentiles in ms, achieved qps, failed requests.

    -r 10 us: fortio's default 1 ms histogram buckets would hide sub-millisecond
    differences; -uniform: spread the connections' send times instead of firing them in
    lockstep bursts (which measures queueing of the burst, also without a mesh)."""
    out = c.pod("a1").ns.run(
        FORTIO, "load", "-quiet", "-qps", str(qps), "-c", str(conns), "-t", f"{seconds:g}s",
        "-p", "50,90,99,99.9", "-r", "0.00001", "-uniform", *extra, "-json", "-", target).stdout
    res = json.loads(out[out.index("{"):])
    pct = {f"p{p['Percentile']:g}": p["Value"] * 1000
           for p in res["DurationHistogram"]["Percentiles"]}
    ok = ("OK", "200")
    errors = sum(v for k, v in (res.get("RetCodes") or {}).items() if str(k) not in ok)
    errors += res.get("ErrorsDurationHistogram", {}).get("Count", 0)
    return {**pct, "qps": res["ActualQPS"], "requests": res["DurationHistogram"]["Count"],
            "errors": errors}


def echo_load(c: cl.Cluster, qps: int, seconds: float) -> dict:
    """Request/response with 1 KiB payloads over 16 kept-alive TCP connections."""
    return fortio(c, f"tcp://{c.pod('b1').ip}:{ECHO_PORT}", qps, seconds,
                  extra=("-payload-size", "1024"))


def churn_load(c: cl.Cluster, seconds: float) -> dict:
    """HTTP/1.1 GETs at the maximum rate, a new TCP connection for every request."""
    return fortio(c, f"http://{c.pod('b1').ip}:{HTTP_PORT}/", 0, seconds,
                  extra=("-keepalive=false",))


def traffic(mode: str, args, progress) -> dict:
    """Throughput, latency at 1000 req/s (and proxy CPU), the maximum rate, and churn;
    in direct mode also the reference relay."""
    progress(f"{mode}: building a cluster with 1 pod per node")
    with build(mode, 1) as c:
        start_servers(c)
        res: dict = {}
        for streams in (1, 4):
            progress(f"{mode}: iperf3 {streams} stream(s), {args.seconds:g} s")
            res[f"throughput_{streams}_gbps"] = iperf(c, streams, args.seconds)
        pids = proxy_pids(c)
        progress(f"{mode}: fortio 1000 req/s, 16 connections, 1 KiB, {args.latency_seconds:g} s")
        with ProxyUsage(pids) as usage:
            res["latency_1000"] = echo_load(c, 1000, args.latency_seconds)
        if pids:
            # Per proxy on the path (two: the client side's and the server side's), the
            # unit of Istio's published "vCPU per 1000 requests/s" figure.
            res["vcpu_per_1000rps_per_proxy"] = (usage.cpu_seconds / usage.wall_seconds /
                                                 (res["latency_1000"]["qps"] / 1000) / 2)
        progress(f"{mode}: fortio at the maximum rate, {args.latency_seconds:g} s")
        res["latency_max"] = echo_load(c, 0, args.latency_seconds)
        progress(f"{mode}: connection churn (new connection per request), "
                 f"{args.latency_seconds:g} s")
        res["churn"] = churn_load(c, args.latency_seconds)
        if mode == "direct":
            res["relay_latency_1000"] = relay_latency(c, args, progress)
        return res


def relay_latency(c: cl.Cluster, args, progress) -> dict:
    """fortio at 1000 req/s through the reference relay (HAProxy on both nodes)."""
    a, b = c.nodes["node-a"], c.nodes["node-b"]
    for node, bind, dst in ((a, a.ip, f"{b.ip}:{RELAY_PORT}"),
                            (b, b.ip, f"{c.pod('b1').ip}:{ECHO_PORT}")):
        cfg = c.tmp / f"haproxy-{node.name}.cfg"
        cfg.write_text(HAPROXY_CFG.format(bind=bind, port=RELAY_PORT, dst=dst))
        node.ns.spawn("haproxy", "-f", str(cfg), log=c.tmp / f"haproxy-{node.name}.log")
        node.ns.wait_listening(RELAY_PORT)
    progress(f"direct: reference relay (HAProxy, 2 hops, no TLS) at 1000 req/s, "
             f"{args.latency_seconds:g} s")
    return fortio(c, f"tcp://{a.ip}:{RELAY_PORT}", 1000, args.latency_seconds,
                  extra=("-payload-size", "1024"))


def scale(mode: str, per_node: int, args, progress) -> dict:
    """N pods per node: proxy memory and CPU idle, then under the 1000 req/s load."""
    progress(f"{mode}: {per_node} pod(s) per node: building")
    t0 = time.monotonic()
    with build(mode, per_node) as c:
        built = time.monotonic() - t0
        start_servers(c)
        pids = proxy_pids(c)
        time.sleep(0.5)
        progress(f"{mode}: {per_node} pod(s) per node: idle {args.idle_seconds:g} s, "
                 f"then 1000 req/s for {args.scale_load_seconds:g} s")
        with ProxyUsage(pids) as idle:
            time.sleep(args.idle_seconds)
        idle_mem = memory(pids)
        with ProxyUsage(pids) as load:
            lat = echo_load(c, 1000, args.scale_load_seconds)
        return {"pods_per_node": per_node, "processes": len(pids), "build_seconds": built,
                "idle": {**idle_mem, "cpu_seconds": idle.cpu_seconds,
                         "wall_seconds": idle.wall_seconds},
                "load": {**memory(pids), "cpu_seconds": load.cpu_seconds,
                         "wall_seconds": load.wall_seconds, "qps": lat["qps"],
                         "p99": lat["p99"], "errors": lat["errors"]}}
