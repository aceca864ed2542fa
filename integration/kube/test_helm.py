"""The chart on the real node (issue 17): `make image`'s OCI archives imported into
containerd, `helm install` → both DaemonSets ready → a labelled namespace's pods talk
over HBONE → `helm uninstall` → nothing of ours left in the pods or on the node.

The node's API server listens on 127.0.0.1 and no kube-proxy runs, so the agent (a
hostNetwork pod) is given the API's address as KUBERNETES_SERVICE_HOST/PORT, as
../shared/KUBERNETES.md says; the CNI directories are the harness's."""
import calendar
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from ambient import (CNI_BIN, MARKER, Capture, Mesh, echo_server, label_namespace,  # noqa: E402
                     pod, send_from)
from chart import (BUILD, CHART, NAMESPACE, ZTUNNEL_RUN, all_pods_ready, build_images,  # noqa: E402
                   daemonsets_ready, failing, in_pod_netns, install_args, ours_on_the_node,
                   release_pods, ztunnel_check)
from node import KUBE_BIN_DIR  # noqa: E402

@pytest.fixture(scope="module")
def images(kube, tmp_path_factory):
    built = []
    for tag in ("e2e1", "e2e2"):  # the second for the upgrade
        built += build_images(tmp_path_factory.mktemp(f"images-{tag}"), tag)
    for i in built:
        assert any(i["name"] in n for n in kube.import_image(i["archive"])), i
    sizes = ", ".join(f"{i['name']} {i['unpacked_size'] / 1e6:.1f} MB" for i in built[:2])
    print(f"images: {sizes}")
    return built


@pytest.fixture
def release(kube, images):
    """The chart installed; uninstalled (and the node checked) afterwards."""
    assert not ZTUNNEL_RUN.exists() or not any(ZTUNNEL_RUN.iterdir()), "a ztunnel runs here already"
    state = {"installed": True}
    try:
        t0 = time.monotonic()
        kube.helm("install", "ztunnel", str(CHART), "--create-namespace", "--wait",
                  "--timeout", "180s", *install_args(kube, "e2e1"))
        # helm's --wait subtracts a DaemonSet's maxUnavailable from the pods it waits
        # for: with the agent's 1 on a one-node cluster it may return before the
        # agent is ready, so wait for every DaemonSet's pods ourselves.
        Mesh.wait(lambda: all_pods_ready(daemonsets_ready(kube)), 120, "every DaemonSet pod ready")
        state["ready_s"] = time.monotonic() - t0
        print(f"helm install -> every DaemonSet pod ready: {state['ready_s']:.1f} s")
        yield state
    finally:
        if state["installed"]:
            kube.helm("uninstall", "ztunnel", "--namespace", NAMESPACE, "--wait", "--timeout", "120s",
                      check=False)
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=60s", check=False)
        if ZTUNNEL_RUN.exists() and not any(ZTUNNEL_RUN.iterdir()):
            ZTUNNEL_RUN.rmdir()  # the kubelet made it for the hostPath volumes


def block_io_uring():
    """A seccomp filter (x86-64) refusing io_uring_setup with EPERM, as containerd's
    default profile does; for preexec_fn."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    io_uring_setup, errno_eperm, allow = 425, 0x00050000 | 1, 0x7fff0000
    insns = (Filter * 4)(Filter(0x20, 0, 0, 0),                 # ld [nr]
                         Filter(0x15, 0, 1, io_uring_setup),    # jeq io_uring_setup
                         Filter(0x06, 0, 0, errno_eperm),       # ret ERRNO(EPERM)
                         Filter(0x06, 0, 0, allow))             # ret ALLOW
    prog = Prog(4, insns)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")


def test_check_pre_passes_on_the_node_and_names_each_provoked_failure(kube, tmp_path):
    pre = ["--pre", "--cni-conf-dir", str(kube.cni_conf_dir)]  # netns: /var/run/netns
    code, checks = ztunnel_check(kube, tmp_path, *pre)
    assert code == 0, checks
    assert list(checks) == ["kernel", "io_uring", "iptables", "capabilities", "CNI config",
                            "netns mount propagation", "API server"], checks
    assert "(/run/netns)" in checks["netns mount propagation"]["detail"], checks
    text = subprocess.run([str(tmp_path / "cli/ztunnel"), "check", *pre, "--kubeconfig",
                           str(kube.kubeconfig)], capture_output=True, text=True, timeout=60).stdout
    print(text)
    assert text.count("✓ ") == 7 and "all 7 checks passed" in text, text

    # io_uring blocked by seccomp, as in a container with the runtime's default profile.
    code, checks = ztunnel_check(kube, tmp_path, *pre, preexec=block_io_uring)
    assert code == 1 and failing(checks) == {"io_uring"}, checks
    assert "seccomp" in checks["io_uring"]["detail"] and "Unconfined" in checks["io_uring"]["hint"]
    # Without the capabilities the agent needs (iptables then cannot read the table either).
    code, checks = ztunnel_check(kube, tmp_path, *pre, wrap=(
        "setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-all", "--"))
    assert code == 1 and failing(checks) <= {"capabilities", "iptables"}, checks
    assert checks["capabilities"]["detail"] == "missing CAP_NET_ADMIN, CAP_SYS_ADMIN", checks
    # No iptables at all.
    code, checks = ztunnel_check(kube, tmp_path, *pre, "--iptables", "/nonexistent/iptables")
    assert code == 1 and failing(checks) == {"iptables"}, checks
    assert "not found" in checks["iptables"]["detail"], checks
    # The legacy iptables backend.
    code, checks = ztunnel_check(kube, tmp_path, *pre, "--iptables", "iptables-legacy")
    assert code == 1 and failing(checks) == {"iptables"}, checks
    assert "legacy" in checks["iptables"]["detail"], checks
    # No CNI network configured yet.
    empty = tmp_path / "net.d"
    empty.mkdir()
    code, checks = ztunnel_check(kube, tmp_path, "--pre", "--cni-conf-dir", str(empty))
    assert code == 1 and failing(checks) == {"CNI config"}, checks
    assert "no .conf or .conflist" in checks["CNI config"]["detail"], checks
    # A configuration the runtime cannot parse.
    (empty / "10-broken.conflist").write_text('{"cniVersion": "1.0.0", "plugins": [')
    code, checks = ztunnel_check(kube, tmp_path, "--pre", "--cni-conf-dir", str(empty))
    assert code == 1 and failing(checks) == {"CNI config"}, checks
    assert "10-broken.conflist is not JSON" in checks["CNI config"]["detail"], checks
    # The runtime's netns directory missing.
    code, checks = ztunnel_check(kube, tmp_path, *pre, "--netns-dir", str(tmp_path / "no-netns"))
    assert code == 1 and failing(checks) == {"netns mount propagation"}, checks
    assert "does not exist" in checks["netns mount propagation"]["detail"], checks
    # A netns directory on a private mount.
    private = tmp_path / "netns"
    private.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ztunnel-check", str(private)], check=True)
    try:
        subprocess.run(["mount", "--make-private", str(private)], check=True)
        code, checks = ztunnel_check(kube, tmp_path, *pre, "--netns-dir", str(private))
    finally:
        subprocess.run(["umount", str(private)], check=True)
    assert code == 1 and failing(checks) == {"netns mount propagation"}, checks
    assert "not shared" in checks["netns mount propagation"]["detail"], checks
    # An API server that does not answer: the pre-install API check and every
    # post-install check fail (none is skipped as passed).
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(kube.kubeconfig.read_text().replace(kube.api_server_url, "https://127.0.0.1:1"))
    assert "127.0.0.1:1" in bad.read_text()
    code, checks = ztunnel_check(kube, tmp_path, *pre, "--kubeconfig", str(bad))
    assert code == 1 and failing(checks) == {"API server"}, checks
    code, checks = ztunnel_check(kube, tmp_path, "--kubeconfig", str(bad))
    assert code == 1 and failing(checks) == set(checks) and len(checks) == 6, checks


def short_lived_ca(tmp_path, days: int) -> tuple[Path, Path]:
    key, cert = tmp_path / "ca-key.pem", tmp_path / "ca-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", str(days), "-subj", "/CN=short-lived root", "-keyout", str(key),
                    "-out", str(cert), "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    return key, cert


def dashboard_metrics() -> set[str]:
    """Every metric name the Grafana dashboard's queries select."""
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            exprs.extend(v for k, v in o.items() if k == "expr")
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(json.loads((CHART / "dashboards/ztunnel.json").read_text()))
    return {m for e in exprs for m in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", e)}


def listen_overflows(kube, ns: str, name: str) -> int:
    """TcpExtListenOverflows of a pod's netns: SYNs or handshakes its kernel dropped
    because a listener's accept queue was full."""
    out = in_pod_netns(kube, ns, name, "nstat", "-az", "TcpExtListenOverflows")
    return int(next(l.split()[1] for l in out.splitlines() if l.startswith("TcpExtListenOverflows")))


def log_line_time(line: str) -> float | None:
    """Unix time of a node process log line (RFC 3339 UTC) or a Go agent's (klog's
    "I1204 01:34:19.341392"), or None."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d\.\d+)Z", line)
    if m:
        y, mo, d, h, mi = (int(x) for x in m.groups()[:5])
    else:
        m = re.match(r"[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d\.\d+)", line)
        if not m:
            return None
        y = time.gmtime().tm_year
        mo, d, h, mi = (int(x) for x in m.groups()[:4])
    return calendar.timegm((y, mo, d, h, mi, 0)) + float(m.groups()[-1])


def log_time_text(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f"{t % 1:.3f}"[1:]


def test_upgrade_hands_pods_over_with_no_connection_lost(kube, kube_ns, release, tmp_path):
    label_namespace(kube, kube_ns, "ambient")
    kube.apply(echo_server(kube, "server", kube_ns))
    server_ip = kube.wait_pod_ready(kube_ns, "server", timeout=90)["status"]["podIP"]
    kube.apply(pod(kube, "client", kube_ns, ["sleep", "3600"]))
    kube.wait_pod_ready(kube_ns, "client", timeout=90)
    for name in ("server", "client"):
        Mesh.wait(lambda: kube.pod(kube_ns, name)["metadata"].get("annotations", {})
                  .get("ambient.istio.io/redirection") == "enabled", 10, f"{name}'s annotation")
        # The agent reached the pod's own sysctl through the chart's hostPath mount.
        migrate = in_pod_netns(kube, kube_ns, name, "cat", "/proc/sys/net/ipv4/tcp_migrate_req")
        assert migrate.strip() == "1", f"{name}: tcp_migrate_req {migrate!r}"
    assert MARKER in send_from(kube, kube_ns, "client", server_ip)

    # A connection every 10 ms from the client pod across the whole rollout of both
    # DaemonSets (node process surged, agent replaced).
    stop = tmp_path / "stop"
    # The retiring pods' logs, kept for a failure's diagnosis (the pods go).
    old_node = next(n for n, image, _ in release_pods(kube) if image.endswith("ztunnel:e2e1"))
    old_agent = next(n for n, image, _ in release_pods(kube) if image.endswith("ztunnel-cni:e2e1"))
    follows = []
    for pod_name, file_name in ((old_node, "old-node.log"), (old_agent, "old-agent.log")):
        f = open(tmp_path / file_name, "w")
        follows.append((f, subprocess.Popen(
            [str(KUBE_BIN_DIR / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "logs", "-f",
             "-n", NAMESPACE, pod_name], stdout=f, stderr=subprocess.STDOUT)))
    in_client = ["nsenter", f"--net={kube.pod_netns_path(kube_ns, 'client')}", sys.executable]
    server_overflows = listen_overflows(kube, kube_ns, "server")
    churn = subprocess.Popen(
        [*in_client, str(REPO / "integration/tools/churn.py"), server_ip, "8080", "--reply", "echo",
         "--stop-file", str(stop)], stdout=subprocess.PIPE, text=True)
    # Two long connections through the retiring node process: one the client ends
    # during the drain (it must finish with every byte), one that outlives the grace
    # (the drain deadline ends it: when, and was every byte before that intact?).
    finish_stop, outlive_stop = tmp_path / "finish", tmp_path / "outlive"
    finishing, outliving = (subprocess.Popen(
        [*in_client, str(REPO / "integration/tools/long_echo.py"), server_ip, "8080",
         "--stop-file", str(f)], stdout=subprocess.PIPE, text=True) for f in (finish_stop, outlive_stop))
    terminating = {}

    def watch_old_node():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if kube.pod(NAMESPACE, old_node)["metadata"].get("deletionTimestamp"):
                    terminating["at"] = time.time()
                    time.sleep(1.0)  # well inside the drain
                    finish_stop.touch()
                    return
            except Exception:
                return  # gone already
            time.sleep(0.05)
    watcher = threading.Thread(target=watch_old_node, daemon=True)
    watcher.start()
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        kube.helm("upgrade", "ztunnel", str(CHART), "--wait", "--timeout", "180s",
                  *install_args(kube, "e2e2"))
        waited = time.monotonic() - t0
        upgraded = [("ztunnel.dev/ztunnel-cni:e2e2", True), ("ztunnel.dev/ztunnel:e2e2", True)]
        Mesh.wait(lambda: sorted((i, r) for _, i, r in release_pods(kube)) == upgraded, 60,
                  "only the upgraded pods, ready")
        rolled = time.monotonic() - t0
        print(f"helm upgrade --wait: {waited:.1f} s; old pods gone: {rolled:.1f} s")
        time.sleep(2.0)  # the new pods alone
    finally:
        stop.touch()
        finish_stop.touch()
        outlive_stop.touch()
        out, _ = churn.communicate(timeout=60)
        finished = json.loads(finishing.communicate(timeout=60)[0].strip().splitlines()[-1])
        outlived = json.loads(outliving.communicate(timeout=60)[0].strip().splitlines()[-1])
        watcher.join(timeout=10)
        for f, follow in follows:
            follow.terminate()
            follow.wait(timeout=10)
            f.close()
    result = json.loads(out.strip().splitlines()[-1])
    print(f"connections during the upgrade: {result}")
    # The echo server's own listen queue: connections its kernel dropped are not ours.
    overflowed = listen_overflows(kube, kube_ns, "server") - server_overflows
    print(f"the server pod's listen queue overflowed {overflowed} times during the upgrade")
    if result["failed"]:
        # Every log line from a second before the first failed connection began to
        # half a second after the last one failed, from the four processes.
        began = result["started_at"] + min(f[0] for f in result["first_failures"]) - 1.0
        ended = result["started_at"] + max(f[1] for f in result["first_failures"]) + 0.5
        print(f"failures between {log_time_text(began)} and {log_time_text(ended)} (UTC)")
        new_pods = {image.split(":")[0]: n for n, image, _ in release_pods(kube) if image.endswith(":e2e2")}
        logs = (("old node process", (tmp_path / "old-node.log").read_text()),
                ("old agent", (tmp_path / "old-agent.log").read_text()))
        logs += tuple((f"new {what}", kube.kubectl("logs", "-n", NAMESPACE, new_pods[image], check=False))
                      for what, image in (("node process", "ztunnel.dev/ztunnel"),
                                          ("agent", "ztunnel.dev/ztunnel-cni")) if image in new_pods)
        for name, text in logs:
            print(f"--- {name}:")
            print("\n".join(line for line in text.splitlines()
                            if began <= (log_line_time(line) or 0) <= ended))
    assert result["failed"] == 0, (result, f"the echo app's listen queue overflowed {overflowed} times")
    assert result["ok"] >= 300, result
    grace = 8  # install_args' terminationGracePeriodSeconds
    assert "at" in terminating, "never saw the old node pod terminating"
    print(f"long connection ended by the client during the drain: {finished}")
    print(f"long connection past the grace: {outlived}, ended "
          f"{outlived['ended_at'] - terminating['at']:.1f} s after the old pod's SIGTERM")
    assert finished["ended"] == "finished" and finished["intact"], finished
    assert finished["ended_at"] > terminating["at"] and finished["lines"] > 10, finished
    assert outlived["ended"] != "finished" and outlived["intact"], outlived
    assert 0 < outlived["ended_at"] - terminating["at"] <= grace + 1, (outlived, terminating)
    # Still over HBONE, served by the new node process.
    assert MARKER in send_from(kube, kube_ns, "client", server_ip)
    node_pod = next(n for n, image, _ in release_pods(kube) if image.endswith("ztunnel:e2e2"))
    log = kube.kubectl("logs", "-n", NAMESPACE, node_pod)
    assert f"{kube_ns}/client" in log and "direction=outbound protocol=HBONE" in log, log[-3000:]


def test_install_mesh_and_uninstall_leave_the_node_clean(kube, kube_ns, release, tmp_path):
    # Both DaemonSets ready on the node, from the imported images.
    ds = daemonsets_ready(kube)
    assert ds == {"ztunnel": (1, 1, 1), "ztunnel-cni": (1, 1, 1)}, ds
    pods = json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    images = sorted(c["image"] for p in pods for c in p["spec"]["containers"])
    assert images == ["ztunnel.dev/ztunnel-cni:e2e1", "ztunnel.dev/ztunnel:e2e1"], images
    node_pod = next(p for p in pods if p["metadata"]["labels"].get("app") == "ztunnel")
    # The kubelet's readiness probe on 15021 passed; the pod has its own netns.
    assert node_pod["status"]["podIP"].startswith("10.244."), node_pod["status"]

    # A labelled namespace: the pods are captured and talk over HBONE.
    label_namespace(kube, kube_ns, "ambient")
    kube.apply(echo_server(kube, "server", kube_ns))
    server = kube.wait_pod_ready(kube_ns, "server", timeout=90)
    server_ip = server["status"]["podIP"]
    kube.apply(pod(kube, "client", kube_ns, ["sleep", "3600"]))
    kube.wait_pod_ready(kube_ns, "client", timeout=90)
    for name in ("server", "client"):
        Mesh.wait(lambda: kube.pod(kube_ns, name)["metadata"].get("annotations", {})
             .get("ambient.istio.io/redirection") == "enabled", 10, f"{name}'s annotation")
    cap = Capture(kube, tmp_path / "helm.pcap")
    got = send_from(kube, kube_ns, "client", server_ip)
    raw = cap.stop()
    assert MARKER in got, got
    assert MARKER.encode() not in raw, "the plaintext marker crossed the node's network"
    assert cap.tls_versions() == {"0x0304"}, (cap.tls_versions(), cap.summary)
    assert "ISTIO_OUTPUT" in in_pod_netns(kube, kube_ns, "client", "iptables-save")

    # The dashboard shows only what a node process exports (scraped here as Prometheus
    # would, through the pod's 15020) or what the kubelet reports of its container.
    status, metrics = kube.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/"
                               f"{node_pod['metadata']['name']}:15020/proxy/stats/prometheus")
    assert status == 200, metrics
    exported = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines()
                if line and not line.startswith("#")}
    used = dashboard_metrics()
    assert len(used) >= 15, used
    cadvisor = {m for m in used if m.startswith("container_")}
    assert not (used - cadvisor) - exported, f"on the dashboard, not exported: {(used - cadvisor) - exported}"
    dashboard = (CHART / "dashboards/ztunnel.json").read_text()
    assert cadvisor and 'container=\\"istio-proxy\\"' in dashboard
    assert [c["name"] for c in node_pod["spec"]["containers"]] == ["istio-proxy"]

    # ztunnel check: the running mesh passes.
    code, checks = ztunnel_check(kube, tmp_path)
    assert code == 0, checks
    assert list(checks) == ["API server", "DaemonSet ztunnel", "DaemonSet ztunnel-cni",
                            "agent connected", "CA certificate", "pods enrolled"], checks
    # The previous test's pods may still be terminating, and served meanwhile.
    serving = re.search(r" \((\d+) pods\)$", checks["agent connected"]["detail"])
    assert serving and int(serving[1]) >= 2, checks
    assert checks["pods enrolled"]["detail"].startswith("2 pods in 1 namespace,"), checks
    print(subprocess.run([str(tmp_path / "cli/ztunnel"), "check", "--kubeconfig", str(kube.kubeconfig)],
                         capture_output=True, text=True, timeout=60).stdout)
    # A CA that expires tomorrow.
    key, cert = short_lived_ca(tmp_path, 1)
    kube.kubectl("create", "secret", "generic", "short-ca", "-n", NAMESPACE,
                 f"--from-file=ca-cert.pem={cert}", f"--from-file=ca-key.pem={key}",
                 f"--from-file=root-cert.pem={cert}", f"--from-file=cert-chain.pem={cert}")
    code, checks = ztunnel_check(kube, tmp_path, "--ca-secret", "short-ca")
    assert code == 1 and failing(checks) == {"CA certificate"}, checks
    assert "less than 30d" in checks["CA certificate"]["detail"], checks
    code, checks = ztunnel_check(kube, tmp_path, "--ca-secret", "short-ca", "--cert-min-validity", "1h")
    assert code == 0, checks
    # A CA Secret without its certificate, and none at all.
    kube.kubectl("create", "secret", "generic", "half-ca", "-n", NAMESPACE, f"--from-file=ca-key.pem={key}")
    code, checks = ztunnel_check(kube, tmp_path, "--ca-secret", "half-ca")
    assert code == 1 and "ca-cert.pem is missing" in checks["CA certificate"]["detail"], checks
    code, checks = ztunnel_check(kube, tmp_path, "--ca-secret", "no-such-ca")
    assert code == 1 and "not found" in checks["CA certificate"]["detail"], checks
    # A node process that cannot reach its agent: it never gets ready, so the rollout
    # stalls with the old pod serving, and the check names both.
    kube.helm("upgrade", "ztunnel", str(CHART), *install_args(kube, "e2e1"),
              "--set", "env.INPOD_UDS=/var/run/ztunnel/nowhere.sock")
    Mesh.wait(lambda: "no ZDS connection" in ztunnel_check(kube, tmp_path)[1]["agent connected"]["detail"],
              60, "the check to see the disconnected node process")
    code, checks = ztunnel_check(kube, tmp_path)
    assert code == 1 and failing(checks) == {"DaemonSet ztunnel", "agent connected"}, checks
    kube.helm("rollback", "ztunnel", "1", "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    Mesh.wait(lambda: ztunnel_check(kube, tmp_path)[0] == 0, 60, "the check to pass after the rollback")

    # Uninstall: the agent sees its DaemonSet deleted and removes everything of ours.
    t0 = time.monotonic()
    kube.helm("uninstall", "ztunnel", "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    release["installed"] = False
    Mesh.wait(lambda: not json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"],
         60, "the release's pods to be gone")
    gone = time.monotonic() - t0
    print(f"helm uninstall -> pods gone: {gone:.1f} s")
    for name in ("server", "client"):
        rules = in_pod_netns(kube, kube_ns, name, "iptables-save")
        assert "ISTIO" not in rules, f"{name} keeps our rules:\n{rules}"
        listeners = in_pod_netns(kube, kube_ns, name, "ss", "-Hltn")
        for port in (15001, 15006, 15008):
            assert f":{port} " not in listeners, f"{name} still listens on {port}:\n{listeners}"
        routes = in_pod_netns(kube, kube_ns, name, "ip", "rule", "show")
        assert "lookup 100" not in routes, routes
        migrate = in_pod_netns(kube, kube_ns, name, "cat", "/proc/sys/net/ipv4/tcp_migrate_req")
        assert migrate.strip() == "0", f"{name} keeps tcp_migrate_req {migrate!r}"
        annotations = kube.pod(kube_ns, name)["metadata"].get("annotations", {})
        assert "ambient.istio.io/redirection" not in annotations, annotations
    deadline = time.monotonic() + 10
    while ours_on_the_node(kube) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours_on_the_node(kube), ours_on_the_node(kube)
    # The check sees nothing installed, the labelled namespace's pods out of the mesh,
    # and a pod annotated as enrolled though nothing put it in the mesh (a running
    # agent would take such an annotation off).
    kube.kubectl("create", "namespace", f"{kube_ns}-plain")
    try:
        Mesh.wait(lambda: kube.api("GET", f"/api/v1/namespaces/{kube_ns}-plain/serviceaccounts/default")[0]
                  == 200, 30, "the default ServiceAccount")
        kube.apply(pod(kube, "stray", f"{kube_ns}-plain", ["sleep", "3600"]))
        kube.wait_pod_ready(f"{kube_ns}-plain", "stray", timeout=60)
        kube.kubectl("annotate", "pod", "-n", f"{kube_ns}-plain", "stray",
                     "ambient.istio.io/redirection=enabled")
        code, checks = ztunnel_check(kube, tmp_path)
    finally:
        kube.kubectl("delete", "namespace", f"{kube_ns}-plain", "--wait=false", check=False)
    assert code == 1 and failing(checks) == set(checks) - {"API server"}, checks
    assert "not found in namespace" in checks["DaemonSet ztunnel"]["detail"], checks
    enrolled = checks["pods enrolled"]["detail"]
    assert "2 not enrolled" in enrolled and f"but not in the mesh: {kube_ns}-plain/stray" in enrolled, enrolled
    # The pods keep working, now directly.
    assert MARKER in send_from(kube, kube_ns, "client", server_ip)
    # New pods start without the plugin.
    kube.apply(echo_server(kube, "late", kube_ns))
    kube.wait_pod_ready(kube_ns, "late", timeout=60)
