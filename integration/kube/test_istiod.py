"""Our node process with a real istiod as its control plane (issue 18): workloads,
services and AuthorizationPolicies over delta xDS, certificates from istiod's CA,
on the harness's real Kubernetes node. Latencies are printed (and measured in the
closing note), never asserted below the generous liveness bounds."""
import base64
import json
import re
import subprocess
import sys
import time

import pytest

from ambient import MARKER, Capture, echo_server, label_namespace, pod, send_from  # noqa: E402
from ambient import Mesh  # noqa: E402
from chart import (CHART, NAMESPACE, ZTUNNEL_RUN, all_pods_ready, build_images,  # noqa: E402
                   daemonsets_ready, in_pod_netns, install_args, ours_on_the_node, release_pods,
                   ztunnel_check)
from istiod import HostZtunnel, Istiod, NodeProxyIdentity, wait  # noqa: E402
from node import BRIDGE  # noqa: E402
from ztnet import istioctl_ztunnel_config  # noqa: E402


@pytest.fixture(scope="module")
def istiod(kube):
    d = Istiod(kube)
    d.prepare_cluster()
    took = d.start()
    print(f"istiod ready in {took:.2f} s")
    yield d
    d.close()


@pytest.fixture
def node_proxy(kube, istiod, tmp_path):
    ident = NodeProxyIdentity(kube, tmp_path)
    zt = HostZtunnel(tmp_path, istiod, ident, kube.node_name)
    yield zt
    zt.stop()
    ident.close()


def ambient_pod(kube, ns, name, command=None):
    """A pod as istio-cni leaves it: annotated as redirected, so istiod sends it as an
    HBONE workload."""
    p = echo_server(kube, name, ns) if command is None else pod(kube, name, ns, command)
    p["metadata"]["annotations"] = {"ambient.istio.io/redirection": "enabled"}
    kube.apply(p)
    return kube.wait_pod_ready(ns, name, timeout=90)


def workload(dump, ns, name):
    return next((w for w in dump["workloads"] if w["namespace"] == ns and w["name"] == name), None)


def server_policy(ns, name, action):
    """An AuthorizationPolicy on the pods labelled app=server for connections from
    `ns`'s default service account."""
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "server"}}, "action": action,
                     "rules": [{"from": [{"source": {"principals": [
                         f"cluster.local/ns/{ns}/sa/default"]}}]}]}}


def test_workloads_policies_and_certificates_come_from_istiod(kube, kube_ns, istiod, node_proxy,
                                                               tmp_path):
    zt = node_proxy
    kube.kubectl("label", "namespace", kube_ns, "istio.io/dataplane-mode=ambient")
    server = ambient_pod(kube, kube_ns, "server")
    ambient_pod(kube, kube_ns, "client", ["sleep", "3600"])
    wait(lambda: workload(zt.dump(), kube_ns, "server") and workload(zt.dump(), kube_ns, "client"),
         30, "both pods in the config dump", zt.log)
    wait(zt.ready, 10, "readiness after the first push", zt.log)
    dump = zt.dump()
    w = workload(dump, kube_ns, "server")
    assert w["protocol"] == "HBONE", w
    assert w["uid"] == f"Kubernetes//Pod/{kube_ns}/server", w
    assert w["workloadIps"] == [server["status"]["podIP"]], w
    assert w["node"] == kube.node_name
    # Each local workload's identity got a certificate from istiod's CA.
    want = f"spiffe://cluster.local/ns/{kube_ns}/sa/default"
    wait(lambda: any(c["identity"] == want and c["state"] == "Available"
                     for c in zt.dump()["certificates"]), 20, f"a certificate for {want}", zt.log)
    assert "CA: " not in zt.log(), zt.log()

    # A policy applied with kubectl reaches the node process (over xDS).
    started = time.monotonic()
    kube.apply(server_policy(kube_ns, "only-client", "ALLOW"))
    wait(lambda: any(p["name"] == "only-client" for p in zt.dump()["policies"]), 10,
         "the policy in the config dump", zt.log)
    print(f"AuthorizationPolicy create -> in the node process: "
          f"{(time.monotonic() - started) * 1000:.0f} ms")
    wait(lambda: f"{kube_ns}/only-client" in workload(zt.dump(), kube_ns, "server")[
        "authorizationPolicies"], 10, "the policy named by its workload", zt.log)

    # A pod added shows up.
    started = time.monotonic()
    ambient_pod(kube, kube_ns, "late", ["sleep", "3600"])
    ready_at = time.monotonic()
    wait(lambda: workload(zt.dump(), kube_ns, "late"), 10, "the new pod", zt.log)
    print(f"pod Ready -> workload in the node process: "
          f"{(time.monotonic() - ready_at) * 1000:.0f} ms (created -> seen "
          f"{(time.monotonic() - started) * 1000:.0f} ms)")

    # A pod deleted goes away.
    kube.kubectl("delete", "pod", "late", "-n", kube_ns, "--wait=false")
    wait(lambda: workload(zt.dump(), kube_ns, "late") is None, 30, "the deleted pod gone", zt.log)
    # istioctl reads the dump of istiod's state: its parser and printers list the pods,
    # the policy and the certificate istiod's CA signed.
    printed = istioctl_ztunnel_config(zt.get(zt.admin, "/config_dump")[1])
    assert re.search(rf"^{kube_ns}\s+server\s+{server['status']['podIP']}\s+{kube.node_name}"
                     rf"\s+None\s+HBONE$", printed, re.M), printed
    assert re.search(rf"^{kube_ns}\s+only-client\s+Allow\s+WorkloadSelector$", printed, re.M), printed
    assert re.search(rf"^{re.escape(want)}\s+Leaf\s+Available\s+true\s", printed, re.M), printed
    print(printed)
    # Every push of a real istiod was usable: ACKed, none NACKed. (istiod filters what it
    # cannot represent, e.g. ports over 65535, before it sends; a NACK with its reasons
    # is tested against a scripted server: ztunnel/control/xds_interop_test.cc.)
    assert "NACK" not in zt.log(), zt.log()


def test_istiod_killed_and_restarted_keeps_the_state_then_syncs_again(kube, kube_ns, istiod,
                                                                      node_proxy):
    zt = node_proxy
    kube.kubectl("label", "namespace", kube_ns, "istio.io/dataplane-mode=ambient")
    ambient_pod(kube, kube_ns, "server")
    wait(lambda: workload(zt.dump(), kube_ns, "server"), 30, "the pod", zt.log)
    istiod.kill()
    time.sleep(1)
    # The node process keeps what it had: workload and certificates.
    dump = zt.dump()
    assert workload(dump, kube_ns, "server") is not None
    assert any(c["state"] == "Available" for c in dump["certificates"])
    assert zt.ready(), "readiness must not drop while istiod is away"
    ambient_pod(kube, kube_ns, "while-down", ["sleep", "3600"])
    took = istiod.start()
    restarted = time.monotonic()
    wait(lambda: workload(zt.dump(), kube_ns, "while-down"), 30,
         "the pod created while istiod was down", zt.log)
    print(f"istiod ready {took:.2f} s after start; its push reached the node process "
          f"{(time.monotonic() - restarted) * 1000:.0f} ms later")
    assert workload(zt.dump(), kube_ns, "server") is not None


@pytest.fixture
def istiod_mesh(kube, istiod, tmp_path):
    """Our node agent enrolling pods (ZDS, capture rules, the redirection annotation)
    and our node process in istiod mode serving them in their namespaces."""
    m = Mesh(kube)
    ident = NodeProxyIdentity(kube, tmp_path)
    zt = None
    try:
        m.start_agent(mesh_config=False)
        zt = HostZtunnel(tmp_path, istiod, ident, kube.node_name, "--inpod", "--inpod-uds",
                         str(m.zds), "--drain-timeout", "3s")
        yield m, zt
    finally:
        if zt is not None:
            zt.stop()
        m.close()
        ident.close()


def refused(out: str) -> bool:
    return MARKER not in out


def test_two_pods_talk_over_hbone_with_istiod_and_policies_apply_live(kube, kube_ns, istiod,
                                                                      istiod_mesh, tmp_path):
    mesh, zt = istiod_mesh
    label_namespace(kube, kube_ns, "ambient")
    server = ambient_pod(kube, kube_ns, "server")
    ambient_pod(kube, kube_ns, "client", ["sleep", "3600"])
    server_ip = server["status"]["podIP"]

    def served(name):
        return any(p["info"]["namespace"] == kube_ns and p["info"]["name"] == name
                   and p["state"] == "Up" for p in zt.dump()["workloadState"].values())
    wait(lambda: served("server") and served("client"), 30, "both pods served", zt.log)
    assert "no mesh config written" in mesh.agent_log()
    assert not mesh.config.exists(), "the agent wrote a mesh config under istiod"
    cap = Capture(kube, tmp_path / "istiod.pcap")
    out = send_from(kube, kube_ns, "client", server_ip)
    assert MARKER in out, out + zt.log()[-3000:]
    data = cap.stop()
    assert MARKER.encode() not in data, "plaintext on the pod bridge"
    assert "0x0304" in cap.tls_versions(), "no TLS 1.3 ServerHello on 15008; tcpdump: " + cap.summary
    log = zt.log()
    line = next(l for l in log.splitlines() if "direction=inbound" in l and kube_ns in l)
    assert f"src.identity=spiffe://cluster.local/ns/{kube_ns}/sa/default" in line, line

    # istiod goes away: connections keep working on the last state and certificates.
    istiod.kill()
    for _ in range(3):
        out = send_from(kube, kube_ns, "client", server_ip)
        assert MARKER in out, "traffic stopped while istiod was down:\n" + zt.log()[-3000:]

    # istiod comes back: a policy applied now is enforced on the next connection.
    istiod.start()
    applied = time.monotonic()
    kube.apply(server_policy(kube_ns, "deny-client", "DENY"))
    wait(lambda: any(p["name"] == "deny-client" for p in zt.dump()["policies"]), 15,
         "the policy from the restarted istiod", zt.log)
    seen = time.monotonic()
    out = send_from(kube, kube_ns, "client", server_ip)
    assert refused(out), f"a DENY policy let the connection through: {out!r}"
    print(f"AuthorizationPolicy (after istiod's restart) -> in the node process "
          f"{(seen - applied) * 1000:.0f} ms; the next connection was refused")
    denied = next(l for l in zt.log().splitlines() if "connection denied" in l and kube_ns in l)
    assert "deny-client" in denied or "DENY" in denied or "policy" in denied, denied


def bridge_host_address() -> str:
    """The host's address on the harness's pod bridge (there once a pod has run)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[3].split("/")[0]


def node_process_get(kube, pod_name: str, path: str) -> str:
    """GET on the node process's admin port (127.0.0.1:15000 in its pod's netns)."""
    code = (f"import urllib.request; print(urllib.request.urlopen("
            f"'http://127.0.0.1:15000{path}', timeout=5).read().decode())")
    return in_pod_netns(kube, NAMESPACE, pod_name, sys.executable, "-c", code)


def test_helm_install_with_istiod_serves_pods_over_hbone(kube, kube_ns, istiod, tmp_path):
    """The chart with xdsAddress set, as an Istio user installs it: the node process in
    its pod takes workloads, policies and certificates from istiod (its projected token,
    istiod's root from the istio-ca-root-cert ConfigMap); the agent only enrolls pods."""
    for i in build_images(tmp_path / "images", "e2e-istiod"):
        assert any(i["name"] in n for n in kube.import_image(i["archive"])), i
    # A pod first: the bridge and its host address exist from the first sandbox on.
    kube.apply(echo_server(kube, "server", kube_ns))
    server_ip = kube.wait_pod_ready(kube_ns, "server", timeout=90)["status"]["podIP"]
    # No kube-proxy or cluster DNS on this node: the node process's pod reaches istiod
    # on the bridge's host address, and is told the name istiod's certificate has, as
    # for an istiod reached by IP (Istio's ALT_XDS_HOSTNAME).
    host_ip = bridge_host_address()
    istiod.kill()
    istiod.secure_host = host_ip
    istiod.start()
    installed = False
    try:
        t0 = time.monotonic()
        kube.helm("install", "ztunnel", str(CHART), "--create-namespace", "--wait",
                  "--timeout", "180s", *install_args(kube, "e2e-istiod"),
                  "--set", f"xdsAddress=https://{host_ip}:{istiod.secure}",
                  "--set", "env.ALT_XDS_HOSTNAME=istiod.istio-system.svc")
        installed = True
        wait(lambda: all_pods_ready(daemonsets_ready(kube)), 120, "every DaemonSet pod ready",
             istiod.log)
        print(f"helm install (istiod mode) -> every DaemonSet pod ready: "
              f"{time.monotonic() - t0:.1f} s")
        node_pod = next(n for n, image, _ in release_pods(kube) if image.endswith("ztunnel:e2e-istiod"))
        assert not (ZTUNNEL_RUN / "mesh.json").exists(), "the agent wrote a mesh config under istiod"

        label_namespace(kube, kube_ns, "ambient")
        kube.apply(pod(kube, "client", kube_ns, ["sleep", "3600"]))
        kube.wait_pod_ready(kube_ns, "client", timeout=90)
        for name in ("server", "client"):
            wait(lambda: kube.pod(kube_ns, name)["metadata"].get("annotations", {})
                 .get("ambient.istio.io/redirection") == "enabled", 20, f"{name}'s annotation",
                 istiod.log)
        dump = lambda: json.loads(node_process_get(kube, node_pod, "/config_dump"))  # noqa: E731
        wait(lambda: {"server", "client"} <= {w["name"] for w in dump()["workloads"]
                                               if w["namespace"] == kube_ns and w["protocol"] == "HBONE"},
             30, "both pods as HBONE workloads from istiod", istiod.log)
        cap = Capture(kube, tmp_path / "helm-istiod.pcap")
        got = send_from(kube, kube_ns, "client", server_ip)
        raw = cap.stop()
        log = kube.kubectl("logs", "-n", NAMESPACE, node_pod)
        assert MARKER in got, got + log[-3000:]
        assert MARKER.encode() not in raw, "the plaintext marker crossed the node's network"
        assert cap.tls_versions() == {"0x0304"}, (cap.tls_versions(), cap.summary)
        line = next(l for l in log.splitlines() if "direction=inbound" in l and kube_ns in l)
        want = f"spiffe://cluster.local/ns/{kube_ns}/sa/default"
        assert f"src.identity={want}" in line, line
        # The certificate came from istiod's CA: this mode has no CA of its own.
        cert = next(c for c in dump()["certificates"] if c["identity"] == want)
        assert cert["state"] == "Available", cert
        # Chained to istiod's root, the one it publishes.
        assert [base64.b64decode(r["pem"]).decode().strip() for r in cert["rootCerts"]] == \
            [istiod.root_pem().strip()], cert["rootCerts"]
        assert "CA: " not in log, log[-3000:]
        code, checks = ztunnel_check(kube, tmp_path)
        assert code == 0, checks
        assert "istio-ca-root-cert" in checks["CA certificate"]["detail"], checks

        # A DENY policy applied with kubectl: enforced on a later connection.
        applied = time.monotonic()
        kube.apply(server_policy(kube_ns, "deny-client", "DENY"))
        wait(lambda: any(p["name"] == "deny-client" for p in dump()["policies"]), 10,
             "the policy in the node process", istiod.log)
        print(f"AuthorizationPolicy kubectl apply -> in the node process in its pod: "
              f"{(time.monotonic() - applied) * 1000:.0f} ms")
        assert MARKER not in send_from(kube, kube_ns, "client", server_ip)
    finally:
        if installed:
            kube.helm("uninstall", "ztunnel", "--namespace", NAMESPACE, "--wait", "--timeout", "120s",
                      check=False)
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=60s", check=False)
        if ZTUNNEL_RUN.exists() and not any(ZTUNNEL_RUN.iterdir()):
            ZTUNNEL_RUN.rmdir()
        istiod.kill()
        istiod.secure_host = "127.0.0.1"
        istiod.start()
    assert not ours_on_the_node(kube), ours_on_the_node(kube)

