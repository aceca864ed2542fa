"""The binary's contract for bad input: one clear line on stderr, non-zero exit."""
import os
import re
import socket
import subprocess

import ztnet


def run(*args, env=None, wrapper=()):
    return subprocess.run([*wrapper, ztnet.ztunnel_bin(), *args], capture_output=True, text=True,
                          timeout=20, env={**os.environ, **(env or {})})


def one_line(text: str) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line, got: {text!r}"
    return lines[0]


def test_help_and_version():
    h = run("--help")
    assert h.returncode == 0
    assert "--outbound-listen" in h.stdout and "ZTUNNEL_WORKERS" in h.stdout
    v = run("--version")
    assert v.returncode == 0
    assert v.stdout.startswith("ztunnel ")


def test_unknown_flag():
    p = run("--no-such-flag")
    assert p.returncode == 2
    assert "no-such-flag" in one_line(p.stderr)


def test_bad_flag_value():
    p = run("--workers", "lots")
    assert p.returncode == 2
    assert one_line(p.stderr) == (
        'ztunnel: invalid value "lots" for --workers: expected an integer from 1 to 256')


def test_bad_env_value():
    p = run(env={"ZTUNNEL_CONNECT_TIMEOUT": "forever"})
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert "ZTUNNEL_CONNECT_TIMEOUT" in line and "forever" in line


def test_bad_listen_address():
    p = run("--outbound-listen", "localhost")
    assert p.returncode == 2
    assert "--outbound-listen" in one_line(p.stderr)


def test_bad_readiness_address():
    p = run("--readiness-listen", "everywhere")
    assert p.returncode == 2
    assert one_line(p.stderr) == ('ztunnel: invalid value "everywhere" for --readiness-listen: '
                                  "expected IP:PORT, e.g. 0.0.0.0:15021, or off")


def test_bind_conflict_fails_loudly():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        p = run("--outbound-listen", f"127.0.0.1:{port}")
        assert p.returncode == 1
        line = one_line(p.stderr)
        assert f"127.0.0.1:{port}" in line and "Address already in use" in line
    finally:
        holder.close()


def test_missing_io_uring_is_one_clear_line():
    p = run(wrapper=(os.environ.get("NO_IO_URING_BIN", str(
        ztnet.REPO / "build" / "integration" / "no_io_uring")),))
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert "io_uring is unavailable" in line
    assert "seccomp" in line  # says why and how to fix it


def test_binary_links_boringssl_never_openssl():
    out = subprocess.run(["ldd", ztnet.ztunnel_bin()], capture_output=True, text=True).stdout
    assert "libssl" not in out and "libcrypto" not in out, out  # BoringSSL is static
    syms = subprocess.run(["nm", "--defined-only", ztnet.ztunnel_bin()], capture_output=True,
                          text=True).stdout
    # A BoringSSL-only API, linked in.
    assert re.search(r" [Tt] SSL_set_custom_verify$", syms, re.M), "BoringSSL not linked in"


def test_bad_local_config_names_the_field(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("workloads:\n- name: a\n  workloadIps: [10.0.0.300]\n")
    p = run("--local-config", str(cfg), "--outbound-listen", "127.0.0.1:0",
            "--inbound-listen", "127.0.0.1:0", "--ca-dir", str(tmp_path / "ca"), "--ca-generate")
    assert p.returncode == 1
    assert one_line(p.stderr) == (
        f"ztunnel: invalid local config: {cfg}: workloads[0].workloadIps[0]: "
        '"10.0.0.300" is not an IP address')


def test_missing_ca_is_one_clear_line(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("workloads: []\n")
    p = run("--local-config", str(cfg), "--outbound-listen", "127.0.0.1:0",
            "--inbound-listen", "127.0.0.1:0", "--ca-dir", str(tmp_path / "none"))
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert line.startswith(f"ztunnel: cannot open the CA in {tmp_path / 'none'}: "), line
    assert "ca-cert.pem" in line or "--ca-generate" in line, line


def test_check_config_validates_without_starting(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("workloads:\n- {name: a, workloadIps: [10.0.0.1]}\n")
    p = run("--check-config", str(good))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{good}: ok (1 workloads, 0 policies)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n- {name: p, action: Audit}\n")
    p = run("--check-config", str(bad))
    assert p.returncode == 1
    assert one_line(p.stderr) == (
        f'ztunnel: invalid local config: {bad}: policies[0].action: "Audit" is not one of '
        "Allow, Deny")


def test_check_config_refuses_what_yaml_would_hide(tmp_path):
    """Defect 8 of issue 15: a second document, a repeated key and a stray tag were
    each read silently (the DENY policy after --- was dropped: "ok (1 workloads,
    0 policies)"). Each is now an error naming its line."""
    cases = {
        "two-docs": ("workloads:\n- {name: a, workloadIps: [10.0.0.1]}\n---\npolicies:\n"
                     "- {name: deny-all, action: Deny}\n", "line 4, column 1: a second YAML document"),
        "dup-key": ("policies:\n- name: p\n  action: Deny\n  action: Allow\n",
                    'line 4, column 3: duplicate key "action"'),
        "tag": ("workloads:\n- name: a\n  network: !!binary Zm9v\n",
                'line 3, column 12: tag "tag:yaml.org,2002:binary" is not allowed here'),
    }
    for name, (text, want) in cases.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        p = run("--check-config", str(f))
        assert p.returncode == 1, (name, p.stdout, p.stderr)
        assert want in one_line(p.stderr), (name, p.stderr)


def test_ca_without_subject_key_identifier_is_refused_at_start(tmp_path):
    """Defect 10 of issue 15: a CA certificate without a Subject Key Identifier was
    accepted, then every issuance failed with "unavailable; retrying"."""
    import sys
    sys.path.insert(0, str(ztnet.REPO / "integration" / "tools"))
    import pki
    cert, key = pki.make_ca(tmp_path, "no-ski")  # cryptography adds no SKI unless asked
    ca = tmp_path / "ca"
    ca.mkdir()
    for name, src in (("ca-cert.pem", cert), ("root-cert.pem", cert), ("ca-key.pem", key)):
        (ca / name).write_bytes(src.read_bytes())
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("workloads: []\n")
    p = run("--local-config", str(cfg), "--outbound-listen", "127.0.0.1:0",
            "--inbound-listen", "127.0.0.1:0", "--inbound-plaintext-listen", "127.0.0.1:0",
            "--metrics-listen", "off", "--readiness-listen", "off", "--admin-listen", "off",
            "--ca-dir", str(ca))
    assert p.returncode == 1, p.stderr
    assert one_line(p.stderr) == (
        f"ztunnel: cannot open the CA in {ca}: {ca / 'ca-cert.pem'}: has no Subject Key "
        "Identifier extension, which the certificates it signs name it by; reissue it with "
        "subjectKeyIdentifier=hash")
