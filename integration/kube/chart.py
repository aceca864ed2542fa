"""The chart on the harness's node: its images, its install arguments, and what a
test asks of a release (DaemonSets ready, its pods, what of ours is left on the node)."""
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

from ambient import CNI_BIN  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

CHART = REPO / "helm/ztunnel"
NAMESPACE = "ztunnel-system"
BUILD = Path(CNI_BIN).resolve().parent.parent  # <build>/kube/ztunnel-cni
ZTUNNEL_RUN = Path("/var/run/ztunnel")


def build_images(out: Path, tag: str) -> list[dict]:
    subprocess.run([sys.executable, str(REPO / "scripts/image.py"), "--build-dir", str(BUILD),
                    "--out-dir", str(out), "--tag", tag], check=True, capture_output=True)
    return json.loads((out / "images.json").read_text())


def install_args(kube, tag: str) -> list[str]:
    port = urllib.parse.urlparse(kube.api_server_url).port
    return ["--namespace", NAMESPACE, "--set", f"tag={tag}",
            "--set", f"cni.binDir={kube.cni_bin_dir}", "--set", f"cni.confDir={kube.cni_conf_dir}",
            "--set", "cni.env.KUBERNETES_SERVICE_HOST=127.0.0.1",
            "--set", f"cni.env.KUBERNETES_SERVICE_PORT={port}",
            "--set", "cni.netnsDir=/run/netns",  # the mount's real path (/var/run -> /run)
            "--set", "terminationGracePeriodSeconds=8", "--set", "cni.unenrollGrace=3s"]


def daemonsets_ready(kube) -> dict:
    out = json.loads(kube.kubectl("get", "daemonsets", "-n", NAMESPACE, "-o", "json"))
    return {d["metadata"]["name"]: (d["status"].get("numberReady", 0),
                                     d["status"].get("desiredNumberScheduled", 0),
                                     d["status"].get("updatedNumberScheduled", 0))
            for d in out["items"]}


def all_pods_ready(daemonsets: dict) -> bool:
    """Both of the release's DaemonSets have every scheduled pod ready."""
    return len(daemonsets) == 2 and all(ready == desired > 0 for ready, desired, _ in daemonsets.values())


def in_pod_netns(kube, ns, name, *cmd) -> str:
    return subprocess.run(["nsenter", f"--net={kube.pod_netns_path(ns, name)}", *cmd],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def ours_on_the_node(kube) -> list[str]:
    """What of ours is on the node outside the pods: CNI entry and binary, files."""
    left = []
    for conf in Path(kube.cni_conf_dir).glob("*"):
        if "ztunnel-cni" in conf.read_text():
            left.append(f"CNI config {conf} names ztunnel-cni")
    if (Path(kube.cni_bin_dir) / "ztunnel-cni").exists():
        left.append(f"{kube.cni_bin_dir}/ztunnel-cni")
    if ZTUNNEL_RUN.exists():
        left += [str(p) for p in ZTUNNEL_RUN.iterdir()]
    return left


def release_pods(kube) -> list[tuple[str, str, bool]]:
    """(name, image, ready) of every pod of the release, terminating ones included."""
    pods = json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    return [(p["metadata"]["name"], p["spec"]["containers"][0]["image"],
             any(c["type"] == "Ready" and c["status"] == "True"
                 for c in p["status"].get("conditions", []))) for p in pods]


def ztunnel_check(kube, tmp_path, *args, wrap=(), preexec=None):
    """Runs `ztunnel check -o json` (the Go binary under the CLI's name): (exit code,
    {check name: result})."""
    cli = tmp_path / "cli" / "ztunnel"
    if not cli.exists():
        cli.parent.mkdir(exist_ok=True)
        cli.symlink_to(Path(CNI_BIN).resolve())
    proc = subprocess.run([*wrap, str(cli), "check", "-o", "json", "--kubeconfig", str(kube.kubeconfig),
                           "--namespace", NAMESPACE, *args],
                          capture_output=True, text=True, timeout=120, preexec_fn=preexec)
    assert proc.stdout, proc.stderr
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["failed"] == sum(not c["ok"] for c in checks.values()), doc
    assert (proc.returncode == 0) == (doc["failed"] == 0), (proc.returncode, doc)
    return proc.returncode, checks


def failing(checks: dict) -> set[str]:
    return {name for name, c in checks.items() if not c["ok"]}
