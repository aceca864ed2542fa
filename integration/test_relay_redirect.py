"""Two namespaces: the client's outbound TCP is REDIRECTed by iptables to ztunnel's
outbound listener (15001) in the same namespace, which reads SO_ORIGINAL_DST and
relays to the server namespace."""
import json
import socket
import time
from pathlib import Path

import ztnet

CLIENT_IP, SERVER_IP, PORT = "10.77.0.1", "10.77.0.2", 9000
TOOLS = Path(__file__).resolve().parent / "tools"


def start_cluster(topo, tmp_path, *ztunnel_args):
    cli = topo.netns("cli")
    srv = topo.netns("srv")
    topo.link(cli, CLIENT_IP, srv, SERVER_IP)
    cli.install_outbound_capture()
    srv.spawn("python3", str(TOOLS / "sink.py"), SERVER_IP, str(PORT))
    srv.wait_listening(PORT)
    zt = ztnet.Ztunnel(cli, tmp_path / "ztunnel.log", "--workers", "2", *ztunnel_args)
    return cli, srv, zt


def send(cli, nbytes: int) -> dict:
    out = cli.run("python3", str(TOOLS / "send.py"), SERVER_IP, str(PORT), str(nbytes)).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_100mb_through_the_relay_is_byte_exact(topo, tmp_path):
    cli, _, zt = start_cluster(topo, tmp_path)
    nbytes = 100 * 1024 * 1024
    r = send(cli, nbytes)
    assert r["server_count"] == nbytes
    assert r["server_sha256"] == r["sha256"]
    # It really went through ztunnel: the access log names this connection and its bytes.
    log = zt.wait_log(f"bytes_sent={nbytes}")
    line = next(l for l in log.splitlines() if "connection complete" in l)
    assert f"dst.addr={SERVER_IP}:{PORT}" in line
    assert f"src.addr=127.0.0.1:{r['local_port']}" in line or f":{r['local_port']} " in line
    assert zt.stop() == 0


def test_sigterm_drains_live_transfer_and_refuses_new(topo, tmp_path):
    cli, _, zt = start_cluster(topo, tmp_path, "--drain-timeout", "30s")
    pause_file = tmp_path / "resume"
    total = 20 * 1024 * 1024
    client = cli.spawn("python3", str(TOOLS / "send.py"), SERVER_IP, str(PORT), str(total),
                       "--pause-after", str(total // 2), "--pause-file", str(pause_file),
                       log=tmp_path / "client.out")
    deadline = time.monotonic() + 20
    while "paused_at" not in (tmp_path / "client.out").read_text():
        assert time.monotonic() < deadline, "client never reached the pause"
        time.sleep(0.05)
    zt.proc.send_signal(15)  # SIGTERM with a live, half-done transfer
    zt.wait_log("draining")
    # New connections are refused at once...
    probe = cli.run("python3", "-c", (
        "import socket,sys\n"
        f"s=socket.socket();s.settimeout(5)\n"
        f"try:\n s.connect(('{SERVER_IP}',{PORT}));print('connected')\n"
        "except ConnectionRefusedError:\n print('refused')\n"), check=False).stdout.strip()
    assert probe == "refused"
    # ...while the live one finishes byte-exact.
    pause_file.write_text("go")
    assert client.wait(timeout=60) == 0
    r = json.loads((tmp_path / "client.out").read_text().strip().splitlines()[-1])
    assert r["server_count"] == total and r["server_sha256"] == r["sha256"]
    assert zt.proc.wait(timeout=30) == 0
    assert "drained; exiting" in zt.log.read_text()


def test_namespaces_are_removed_after_a_test(tmp_path):
    with ztnet.Topology("itclean") as t:
        a = t.netns("a")
        name = a.name
        assert name in ztnet.sh("ip", "netns", "list").stdout
    assert name not in ztnet.sh("ip", "netns", "list").stdout
