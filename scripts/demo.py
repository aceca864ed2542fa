#!/usr/bin/env python3
"""make demo: the relay between two network namespaces, end to end, then cleanup.

Later issues grow this into the full mesh demo (two nodes, mTLS, policy)."""
import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "integration"))
import ztnet  # noqa: E402

CLIENT_IP, SERVER_IP, PORT = "10.77.0.1", "10.77.0.2", 9000
TOOLS = REPO / "integration" / "tools"


def step(n, text):
    print(f"\n[{n}] {text}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ztunnel", default=str(REPO / "build" / "ztunnel" / "app" / "ztunnel"))
    args = ap.parse_args()
    import os
    os.environ["ZTUNNEL_BIN"] = args.ztunnel

    print("ztunnel demo: an io_uring TCP relay that captures a pod's traffic transparently")
    with ztnet.Topology("demo") as topo, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        step(1, "Two network namespaces play two pods, joined by a veth pair")
        client = topo.netns("client")
        server = topo.netns("server")
        topo.link(client, CLIENT_IP, server, SERVER_IP)
        print(f"    {client.name}  {CLIENT_IP}   <-- veth -->   {server.name}  {SERVER_IP}")

        step(2, "Capture rules in the client pod (iptables/outbound-redirect.rules)")
        client.install_outbound_capture()
        print("    every TCP connection leaving the client is REDIRECTed to 127.0.0.1:15001,")
        print("    except ztunnel's own sockets (SO_MARK 1337) and loopback traffic")

        step(3, "ztunnel starts inside the client pod")
        zt = ztnet.Ztunnel(client, tmp / "ztunnel.log", "--workers", "2")
        ready = [l for l in zt.log.read_text().splitlines() if "ready:" in l][0]
        print("    " + ready.split("\t")[-1])

        step(4, f"The client sends 50 MB to {SERVER_IP}:{PORT}; it knows nothing of ztunnel")
        server.spawn("python3", str(TOOLS / "sink.py"), SERVER_IP, str(PORT))
        server.wait_listening(PORT)
        out = client.run("python3", str(TOOLS / "send.py"), SERVER_IP, str(PORT),
                         str(50 * 1024 * 1024)).stdout
        r = json.loads(out.strip().splitlines()[-1])
        same = r["server_sha256"] == r["sha256"]
        print(f"    server received {r['server_count']:,} bytes; sha256 "
              f"{'matches' if same else 'DIFFERS'}: {r['sha256'][:16]}...")

        step(5, "What ztunnel saw (its access log line for that connection)")
        log = zt.wait_log("bytes_sent=")
        line = [l for l in log.splitlines() if "connection complete" in l][-1]
        print("    " + line.split("\t")[-1])

        step(6, "Throughput through ztunnel for 3 seconds (iperf3)")
        server.spawn("iperf3", "-s", "-p", "5201")
        server.wait_listening(5201)
        res = json.loads(client.run("iperf3", "-c", SERVER_IP, "-p", "5201", "-t", "3",
                                    "-J").stdout)
        gbps = res["end"]["sum_received"]["bits_per_second"] / 1e9
        print(f"    {gbps:.1f} Gbit/s, one TCP stream, relayed by ztunnel")

        step(7, "SIGTERM: ztunnel drains (stops accepting, lets live connections end) and exits")
        code = zt.stop()
        print(f"    exit code {code}")
        if not same or code != 0:
            print("demo FAILED", file=sys.stderr)
            return 1
    print("\nCleaned up: namespaces, veths and their iptables rules are gone.")
    print("Next: `make test` runs every test; `make bench` compares against HAProxy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
