"""Smoke test of the single-node Kubernetes harness (node.py): pods start from the
locally built busybox image, reach each other on the pod bridge, kubectl exec works over
loopback, Services are allocated, deleted pods go away, the pod's netns is found."""
import json
import os
import subprocess
import time

ECHO_PORT = 8080


def busybox_pod(kube, name, namespace, command, labels=None, probe_port=None):
    container = {
        "name": "main", "image": kube.busybox_image, "imagePullPolicy": "Never",
        "command": command,
    }
    if probe_port:
        container["readinessProbe"] = {"tcpSocket": {"port": probe_port},
                                       "periodSeconds": 1, "initialDelaySeconds": 0}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }


def test_node_ready(kube):
    node = json.loads(kube.kubectl("get", "node", kube.node_name, "-o", "json"))
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    # The harness's CNI config is the only one containerd sees.
    assert sorted(os.listdir(kube.cni_conf_dir)) == ["10-ztunnel-kube.conflist"]
    assert (kube.cni_bin_dir / "bridge").exists()


def test_pods_echo_service_delete(kube, kube_ns):
    t0 = time.monotonic()
    kube.apply([
        busybox_pod(kube, "echo", kube_ns, ["nc", "-ll", "-p", str(ECHO_PORT), "-e", "cat"],
                    probe_port=ECHO_PORT),
        busybox_pod(kube, "client", kube_ns, ["sleep", "3600"]),
    ])
    server = kube.wait_pod_ready(kube_ns, "echo", timeout=60)
    kube.wait_pod_ready(kube_ns, "client", timeout=60)
    print(f"two pods create -> Ready: {time.monotonic() - t0:.2f} s")
    server_ip = server["status"]["podIP"]
    assert server_ip.startswith("10.244.0."), server_ip

    # Pod to pod on the bridge, through kubectl exec (apiserver -> kubelet on loopback).
    payload = "hello-ztunnel-kube"
    out = kube.exec(kube_ns, "client",
                    f"echo {payload} | nc -w 2 {server_ip} {ECHO_PORT}", timeout=30)
    assert payload in out

    # The pod's netns as a process on the host sees it: eth0 has the pod IP, no default route.
    netns = kube.pod_netns_path(kube_ns, "echo")
    addrs = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr", "show",
                            "eth0"], capture_output=True, text=True, check=True).stdout
    assert f"inet {server_ip}/24" in addrs
    routes = subprocess.run(["nsenter", f"--net={netns}", "ip", "route"], capture_output=True,
                            text=True, check=True).stdout
    assert "default" not in routes
    assert kube.pod_netns_pin(kube_ns, "echo").startswith("/run/netns/cni-")

    # A Service gets a ClusterIP from the service range and an EndpointSlice with the pod.
    kube.apply({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo", "namespace": kube_ns},
        "spec": {"selector": {"app": "echo"},
                 "ports": [{"name": "tcp-echo", "port": 80, "targetPort": ECHO_PORT}]},
    })
    svc = json.loads(kube.kubectl("get", "service", "echo", "-n", kube_ns, "-o", "json"))
    assert svc["spec"]["clusterIP"].startswith("10.96."), svc["spec"]
    deadline = time.monotonic() + 30
    while True:
        slices = json.loads(kube.kubectl("get", "endpointslices", "-n", kube_ns, "-l",
                                         "kubernetes.io/service-name=echo", "-o", "json"))
        ips = [a for s in slices["items"] for e in s.get("endpoints") or []
               for a in e["addresses"]]
        if ips == [server_ip]:
            break
        assert time.monotonic() < deadline, f"endpointslice addresses {ips}"
        time.sleep(0.2)

    # A deleted pod goes away, its sandbox and its netns too.
    client_pin = kube.pod_netns_pin(kube_ns, "client")
    t0 = time.monotonic()
    kube.delete("pod", "client", namespace=kube_ns, wait=False)
    kube.wait_pod_gone(kube_ns, "client", timeout=30)
    print(f"pod delete -> gone: {time.monotonic() - t0:.2f} s")
    deadline = time.monotonic() + 10
    while os.path.exists(client_pin):
        assert time.monotonic() < deadline, f"{client_pin} still there"
        time.sleep(0.1)
