"""The chart without a cluster (ctest `helm_chart`): `helm lint`, `helm template`
against goldens (helm/testdata; UPDATE_GOLDENS=1 rewrites them), the schema's refusals,
and the CA a first install generates. Install, upgrade and uninstall on the real node
are in integration/kube/test_helm.py."""
import base64
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE / "ztunnel"
GOLDENS = HERE / "testdata"
HELM = os.environ.get("ZTUNNEL_HELM", "/opt/ztunnel-deps/kube-1.34.4/bin/helm")

# name -> extra `helm template` flags. ca.generate=false keeps the output deterministic
# (a generated root is random); the generated CA has a test of its own.
CASES = {
    "default": [],
    "istiod": ["--set", "xdsAddress=https://istiod.istio-system.svc:15012"],
    "custom": ["--set", "tag=1.2.3", "--set", "logAsJson=true", "--set", "logLevel=debug",
               "--set", "env.ZTUNNEL_WORKERS=4", "--set", "network=net1",
               "--set", "image=registry.local:5000/team/zt@sha256:" + "a" * 64,
               "--set", "cni.dnsCapture=true", "--set", "cni.excludeNamespaces={kube-system,monitoring}",
               "--set", "terminationGracePeriodSeconds=60", "--set", "trustDomain=example.org"],
}


def helm(*args, check=True):
    home = Path(tempfile.gettempdir()) / "ztunnel-helm-test"
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower())
                            for k in ("CACHE", "CONFIG", "DATA")}}
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def template(*flags):
    return helm("template", "ztunnel", str(CHART), "--namespace", "ztunnel-system", *flags).stdout


def test_lint_is_clean():
    out = helm("lint", "--strict", str(CHART), "--namespace", "ztunnel-system",
               "--set", "ca.generate=false")
    assert "0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_template_matches_golden(name):
    got = template("--set", "ca.generate=false", *CASES[name])
    golden = GOLDENS / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.write_text(got)
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDENS=1"
    assert got == golden.read_text(), f"helm template differs from {golden} (UPDATE_GOLDENS=1 to accept)"
    # Every object parses, and names a kind Kubernetes knows.
    for doc in yaml.safe_load_all(got):
        if doc:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_rendered_pods_are_what_the_node_needs():
    docs = [d for d in yaml.safe_load_all(template()) if d]
    ds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "DaemonSet"}
    node = ds["ztunnel"]["spec"]["template"]
    agent = ds["ztunnel-cni"]["spec"]["template"]
    # Config changes roll both DaemonSets.
    for t in (node, agent):
        assert len(t["metadata"]["annotations"]["checksum/config"]) == 64
    assert node["metadata"]["annotations"]["prometheus.io/port"] == "15020"
    assert node["spec"]["priorityClassName"] == "system-node-critical"
    c = node["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert c["securityContext"]["seccompProfile"]["type"] == "Unconfined"  # io_uring
    assert set(c["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "SYS_ADMIN", "NET_RAW"}
    assert not node["spec"].get("hostNetwork") and node["spec"]["automountServiceAccountToken"] is False
    assert ds["ztunnel"]["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert agent["spec"]["hostNetwork"] and agent["spec"]["hostPID"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["data"]["EXCLUDE_NAMESPACES"] == "kube-system,ztunnel-system"
    # Least privilege: the agent may write pods (the annotation) and events, nothing else.
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("ztunnel-cni"))
    writes = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
              if set(rule["verbs"]) - {"get", "list", "watch"}}
    assert writes == {("", "pods"), ("", "events")}, writes


def test_a_changed_value_changes_the_checksum():
    def checksum(*flags):
        docs = [d for d in yaml.safe_load_all(template("--set", "ca.generate=false", *flags)) if d]
        node = next(d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "ztunnel")
        return node["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum() == checksum()
    assert checksum() != checksum("--set", "logLevel=debug")


@pytest.mark.parametrize("flags, message", [
    (["--set", "logLevel=loud"], "at '/logLevel': value must be one of"),
    (["--set", "unknownKey=1"], "additional properties 'unknownKey' not allowed"),
    (["--set", "cni.binDir=relative/dir"], "at '/cni/binDir'"),
    (["--set", "terminationGracePeriodSeconds=soon"], "at '/terminationGracePeriodSeconds'"),
    (["--set", "resources.requests.cpu=1", "--set", "resources.cpus=2"], "additional properties 'cpus' not allowed"),
    (["--set", "xdsAddress=http://istiod.istio-system.svc:15010"], "over TLS only"),
])
def test_a_wrong_value_is_refused_with_the_reason(flags, message):
    proc = helm("template", "ztunnel", str(CHART), *flags, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_first_install_generates_an_ecdsa_root_ca(tmp_path):
    docs = [d for d in yaml.safe_load_all(template()) if d]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["metadata"]["name"] == "cacerts"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    assert data["ca-cert.pem"] == data["root-cert.pem"] == data["cert-chain.pem"]
    (tmp_path / "ca.pem").write_bytes(data["ca-cert.pem"])
    (tmp_path / "key.pem").write_bytes(data["ca-key.pem"])
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "ca.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE" in text and "Subject Key Identifier" in text and "prime256v1" in text
    # The key is the certificate's.
    pub_cert = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "ca.pem"), "-noout", "-pubkey"],
                              capture_output=True, text=True, check=True).stdout
    pub_key = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-pubout"],
                             capture_output=True, text=True, check=True).stdout
    assert pub_cert == pub_key
    # Without generation, no Secret is rendered (bring your own).
    docs = [d for d in yaml.safe_load_all(template("--set", "ca.generate=false")) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
