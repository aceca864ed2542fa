"""Simulated hosts for tests, the demo and benchmarks: network namespaces joined by
veth pairs, processes started inside them, and guaranteed cleanup.

Every namespace is named zt-<tag>-<pid>-<role>, so a later run can remove what a
killed run left behind (only namespaces whose creating process is gone).
Only addresses inside these namespaces are used; nothing leaves the machine.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTBOUND_RULES = REPO / "iptables" / "outbound-redirect.rules"


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs a command, raising with its stderr when it fails."""
    proc = subprocess.run(args, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def remove_stale_namespaces() -> None:
    """Deletes zt-* namespaces whose creating process no longer exists."""
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if len(parts) >= 4 and parts[0] == "zt" and parts[2].isdigit():
            if not Path(f"/proc/{parts[2]}").exists():
                sh("ip", "netns", "del", name, check=False)


class Netns:
    """One network namespace: a simulated host or pod."""

    def __init__(self, topo: "Topology", name: str):
        self.topo = topo
        self.name = name

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, input: str | None = None):
        return sh(*self.cmd(*args), check=check, input=input)

    def spawn(self, *args: str, log: Path | None = None, env: dict | None = None,
              stdout=None) -> subprocess.Popen:
        """Starts a process inside the namespace; it is killed at cleanup."""
        out = open(log, "w") if log else (stdout or subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(*args), stdout=out,
                                stderr=subprocess.STDOUT if log else None,
                                env={**os.environ, **(env or {})})
        self.topo.processes.append(proc)
        return proc

    def install_outbound_capture(self) -> None:
        """Installs the outbound REDIRECT rules (atomically, iptables-restore)."""
        self.run("iptables-restore", "--noflush", input=OUTBOUND_RULES.read_text())

    def wait_listening(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run("ss", "-Htln", f"sport = :{port}").stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listens on port {port} in {self.name}")


class Topology:
    """Creates namespaces and links; close() (or the with-block) removes them all,
    also on exceptions, SIGTERM and Ctrl-C."""

    def __init__(self, tag: str):
        remove_stale_namespaces()
        self.prefix = f"zt-{tag}-{os.getpid()}"
        self.namespaces: list[Netns] = []
        self.processes: list[subprocess.Popen] = []
        self.cleanups: list = []  # callables run by close(), after the namespaces are gone
        self._closed = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.close()
        raise SystemExit(128 + signum)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def netns(self, role: str) -> Netns:
        ns = Netns(self, f"{self.prefix}-{role}")
        sh("ip", "netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def veth(self, a: Netns, b: Netns) -> tuple[str, str]:
        """Joins a and b with a veth pair (no addresses, down); returns the two names,
        unique per run and at most 15 characters."""
        self._links = getattr(self, "_links", 0) + 1
        idx = self._links  # unique per topology; the pid part makes it unique per run
        va, vb = f"ztv{os.getpid() % 10000}a{idx}", f"ztv{os.getpid() % 10000}b{idx}"
        sh("ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", "name", vb,
           "netns", b.name)
        return va, vb

    def link(self, a: Netns, a_ip: str, b: Netns, b_ip: str, prefix_len: int = 24) -> None:
        """Joins a and b with a veth pair and gives each end an address."""
        va, vb = self.veth(a, b)
        a.run("ip", "addr", "add", f"{a_ip}/{prefix_len}", "dev", va)
        b.run("ip", "addr", "add", f"{b_ip}/{prefix_len}", "dev", vb)
        a.run("ip", "link", "set", va, "up")
        b.run("ip", "link", "set", vb, "up")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self.processes:
            if p.poll() is None:
                p.kill()
        for p in self.processes:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Deleting a namespace removes its veth ends and every iptables rule inside it.
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns.name, check=False)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:  # cleanup must go on
                pass


# Under the sanitizer build (CTest sets ZTUNNEL_SANITIZER_DIR) a process's RSS also
# holds ASan's shadow memory (an eighth of every byte its heap ever touched), the
# redzones around each allocation and the allocator's quarantine of freed memory, none
# of which a release build has. RSS budgets are measured for the release build, whose
# run of the same tests checks them as they are; rss_budget gives them room for ASan's
# own memory, so the sanitized run still catches growth without a bound.
SANITIZED = bool(os.environ.get("ZTUNNEL_SANITIZER_DIR"))


def rss_budget(kib: int) -> int:
    """An RSS growth budget in KiB: as given, or 8x plus 32 MiB under ASan."""
    return kib * 8 + (32 << 10) if SANITIZED else kib


def ztunnel_bin() -> str:
    path = os.environ.get("ZTUNNEL_BIN", str(REPO / "build" / "ztunnel" / "app" / "ztunnel"))
    if not Path(path).exists():
        raise FileNotFoundError(f"ztunnel binary not found at {path}: run `make build` first")
    return path


def istioctl_ztunnel_config(dump: str, what: str = "all") -> str:
    """What `istioctl ztunnel-config <what> --file` prints for `dump` (istioctl's own
    parser and printers, scripts/istiod/ztunnel-config); fails when it cannot read it."""
    path = os.environ.get("ISTIO_ZTUNNEL_CONFIG_BIN",
                          str(REPO / "build" / "integration" / "istio-ztunnel-config"))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(dump)
        f.flush()
        proc = subprocess.run([path, what, f.name], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"istioctl's reader refused the config dump: {proc.stderr}"
    return proc.stdout


class Ztunnel:
    """A ztunnel process running inside a namespace, its log in a file."""

    def __init__(self, ns: Netns, log: Path, *args: str, env: dict | None = None,
                 wrap: tuple[str, ...] = ()):
        """`wrap` is a command that execs the binary (e.g. prlimit ... --), so the
        process keeps the pid we started."""
        self.ns = ns
        self.log = log
        self.proc = ns.spawn(*wrap, ztunnel_bin(), *args, log=log, env=env)
        self.wait_log("ready:", timeout=10)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = self.log.read_text() if self.log.exists() else ""
            if text in content:
                return content
            if self.proc.poll() is not None:
                raise RuntimeError(f"ztunnel exited ({self.proc.returncode}):\n{content}")
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not in ztunnel log:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    @property
    def pid(self) -> int:
        """The ztunnel process itself (ip netns exec execs it, so it is the same pid)."""
        return self.proc.pid
