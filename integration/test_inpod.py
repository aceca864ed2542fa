"""In-pod mode end to end: one node process serves two pods of its node inside their
own network namespaces. The agent enrolls them (rules in each pod, AddWorkload with the
pod's netns over ZDS); pod1's plain TCP to pod2 is captured in pod1, tunnelled over
HBONE from pod1's namespace to the listener on 15008 in pod2's, and delivered with
mTLS identities; unenrolling pod1 lets its traffic flow uncaptured again; a restart of
the node process gets the snapshot back and traffic resumes."""
import json
import os
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


def test_enrolled_pods_are_captured_and_tunnelled(topo, tmp_path):
    node, pod1, pod2 = topo.netns("node"), topo.netns("pod1"), topo.netns("pod2")
    topo.link(pod1, POD1_IP, pod2, POD2_IP)
    pod2.spawn(PY, str(TOOLS / "sink.py"), POD2_IP, str(PORT))
    pod2.wait_listening(PORT)
    (tmp_path / "mesh.yaml").write_text(CONFIG)
    zds, control = tmp_path / "zds.sock", tmp_path / "agent.sock"
    agent_log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen([AGENT, "serve", "--zds-socket", str(zds), "--control-socket",
                              str(control)], stdout=agent_log, stderr=subprocess.STDOUT)
    topo.processes.append(agent)
    while not control.exists():
        assert agent.poll() is None
        time.sleep(0.05)
    args = ["--local-config", str(tmp_path / "mesh.yaml"), "--ca-dir", str(tmp_path / "ca"),
            "--ca-generate", "--node-name", "node-a", "--inpod", "--inpod-uds", str(zds)]
    zt = ztnet.Ztunnel(node, tmp_path / "zt.log", *args)

    def cli(*a):
        r = subprocess.run([AGENT, *a, "--control-socket", str(control)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    # Before enrollment: plain TCP straight through, nothing listens in the pods.
    assert send(pod1)["server_count"] == 1 << 20
    assert ":15001" not in listening(pod1)

    for ns, name in ((pod1, "pod1"), (pod2, "pod2")):
        out = cli("enroll", "--netns", f"/var/run/netns/{ns.name}", "--uid", f"shop/{name}",
                  "--name", name, "--namespace", "shop", "--service-account",
                  "web" if name == "pod1" else "db")
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
    zt = ztnet.Ztunnel(node, tmp_path / "zt2.log", *args)
    zt.wait_log("serving pod shop/pod2")
    done = send(pod1)
    assert done["server_count"] == 1 << 20
    zt.wait_log("src.identity=spiffe://cluster.local/ns/shop/sa/web")

    # Unenroll pod1: its rules and listeners go, its traffic flows uncaptured again
    # (straight to pod2's sink, which pod2's rules still send through 15006).
    out = cli("unenroll", "--uid", "shop/pod1")
    assert "capture rules removed" in out
    zt.wait_log("stopped serving pod shop/pod1")
    assert ":15001" not in listening(pod1)
    assert "ISTIO" not in pod1.run("iptables-save").stdout
    assert send(pod1)["server_count"] == 1 << 20
    assert zt.proc.poll() is None
    assert zt.stop() == 0
