"""Sidecar mode on the simulated cluster (the comparison the benchmark makes, DESIGN §7):
no node process and no agent; each mesh pod runs its own dedicated-mode ztunnel (same
binary, same mTLS). Traffic between pods is captured by the source pod's proxy, carried
over HBONE with the source pod's identity, and delivered by the destination pod's."""
import subprocess

from cluster import SERVICE_PORT, SERVICE_VIP, Cluster, tls_handshakes
from test_mesh import assert_exact, nothing_left_behind  # noqa: F401 (autouse fixture)


def test_sidecars_carry_pod_traffic_over_mtls(topo, tmp_path):
    c = Cluster(topo, tmp_path, mode="sidecar")
    assert all(n.zt is None for n in c.nodes.values())  # no node process in this mode
    for pod in c.pods:
        assert (pod.sidecar is not None) == pod.mesh
    c.start_sink("b1")
    with c.capture("node-a") as pcap:
        r = c.send("a1", "b1", nbytes=2 << 20, pattern="ZT-SIDECAR-MARKER")
    assert_exact(r, 2 << 20)
    # The destination pod's own proxy delivered it, having verified a1's identity.
    b1_log = c.pod("b1").sidecar.wait_log("direction=inbound")
    inbound = [l for l in b1_log.splitlines() if "connection complete" in l and "inbound" in l]
    assert inbound and f"src.identity={c.pod('a1').identity}" in inbound[-1], b1_log
    assert "protocol=HBONE" in inbound[-1]
    hellos = tls_handshakes(pcap)
    assert hellos, "no TLS handshake to 15008 on the node link"
    assert b"ZT-SIDECAR-MARKER" not in pcap.read_bytes()

    # A service VIP resolves in the source pod's proxy, to either endpoint.
    c.start_sink("a2")
    c.start_sink("b2")
    for _ in range(4):
        assert_exact(c.send("a1", SERVICE_VIP, SERVICE_PORT, nbytes=4096), 4096)
    assert len(c.sink_log("a2")) >= 1 and len(c.sink_log("b2")) >= 1

    # Stopping a sidecar removes its pod's rules: the pod's traffic is uncaptured again.
    a1 = c.pod("a1")
    assert "ISTIO" in a1.ns.run("iptables-save").stdout
    assert a1.sidecar.stop() == 0
    assert "ISTIO" not in a1.ns.run("iptables-save").stdout
