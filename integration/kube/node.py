#!/usr/bin/python3
"""A real single-node Kubernetes 1.34 for tests: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubelet and a containerd of its own, all on
127.0.0.1 or inside the network namespaces the node creates, started and stopped by one
command. The facts and pitfalls it is built on are in KUBERNETES.md (shared notes).

    python3 integration/kube/node.py up      # prints the kubeconfig path, leaves it running
    python3 integration/kube/node.py status
    python3 integration/kube/node.py down    # also cleans what a crashed run left behind

    node = KubeNode(); node.start()          # from Python (pytest: the `kube` fixture)
    node.apply({...}); node.wait_pod_ready("default", "a"); node.exec("default", "a", "ip a")
    node.stop(); assert not node.leftovers()

Everything lives in the state dir (default /run/ztunnel-kube, env ZTUNNEL_KUBE_DIR):
certificates (pki/), kubeconfigs, component configs, every component's log (logs/),
pid files (pids/), containerd's root/state/socket, the kubelet root, etcd's data, the
harness-owned CNI bin dir (symlinks to /usr/lib/cni/*, a later CNI plugin can be put
there) and conf dir, and state.json: ports, argv of every component and what was changed
on the host (sysctl values before, /etc/hosts line, /run/netns bind mount, host dirs the
node created), so `down` from another process, or after a crash, can undo it.

Host changes, all undone by stop(): the /run/netns shared bind mount (pitfall 3), netns
pins /run/netns/cni-*, the bridge ztk0 (10.244.0.1/24), iptables chains KUBE-* (kubelet)
and CNI-*, cgroups kubepods* in every hierarchy, sysctls the kubelet and the bridge
plugin set, a "<hostname>" line in /etc/hosts if the hostname did not map to 127.0.0.1,
/var/log/containers symlinks, libcni's cache /var/lib/cni/results/ztunnel-kube-*, shim
sockets in /run/containerd/s. One node per machine (the bridge and netns names are
shared). Images are built without a registry (scripts/oci_image.py), cached in
/var/cache/ztunnel-kube (env ZTUNNEL_KUBE_CACHE) and imported with ctr; pods use
`imagePullPolicy: Never`. There is no kube-proxy and no cluster DNS: ClusterIPs are
allocated but do not route.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

import oci_image  # noqa: E402

KUBE_BIN_DIR = Path(os.environ.get("ZTUNNEL_KUBE_BIN_DIR", "/opt/ztunnel-deps/kube-1.34.4/bin"))
DEFAULT_STATE_DIR = "/run/ztunnel-kube"
CACHE_DIR = Path(os.environ.get("ZTUNNEL_KUBE_CACHE", "/var/cache/ztunnel-kube"))
SYSTEM_CNI_BIN = Path("/usr/lib/cni")
BRIDGE = "ztk0"
CNI_NETWORK = "ztunnel-kube"
CNI_CONFLIST = "10-ztunnel-kube.conflist"
POD_SUBNET = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
PAUSE_IMAGE = "ztunnel-test/pause:1"
BUSYBOX_IMAGE = "ztunnel-test/busybox:1"
BUSYBOX_APPLETS = ("sh", "nc", "ip", "httpd", "sleep", "cat", "echo", "nsenter", "ls", "ps",
                   "env", "grep", "head", "tail", "kill", "mkdir", "rm", "sed", "awk", "tr",
                   "wc", "seq", "printf", "true", "false", "test", "[", "timeout", "date",
                   "hostname", "id", "netstat", "ping", "ifconfig", "route", "dd", "xxd",
                   "sha256sum", "stat", "touch", "mount", "uname", "yes", "tee")
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# ztunnel-kube"
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
LIBCNI_CACHE = Path("/var/lib/cni")
POD_LOG_LINKS = Path("/var/log/containers")
SHIM_SOCKET_ROOT = Path("/run/containerd")
LIBMOUNT_DIR = Path("/run/mount")  # util-linux mount(8) creates it for its utab
# The kubelet's device-plugin socket dir is fixed (the device plugin API), --root-dir or not.
DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
# What the kubelet (setupKernelTunables) and the bridge plugin (isGateway) change.
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward")
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMPONENTS = ("etcd", "containerd", "kube-apiserver", "kubelet", "kube-controller-manager",
              "kube-scheduler")
IMAGE_RECIPE_VERSION = "1"


class KubeError(RuntimeError):
    pass


def _run(*args, check=True, input=None, timeout=60, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise KubeError(f"{shlex.join(str(a) for a in args)} failed ({proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _mountinfo() -> list[str]:
    """Mount points, in mount order (octal escapes decoded)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def _is_mountpoint(path: Path) -> bool:
    return str(path) in _mountinfo()


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _read_sysctl(key: str) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError:
        return None


def _proc_state(pid: int) -> str | None:
    """The process state letter, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _proc_state(pid) not in (None, "Z", "X")


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kubepods_cgroups() -> list[Path]:
    """Every cgroup dir under a kubepods* cgroup in every hierarchy, deepest first."""
    found = []
    for hier in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        for top in sorted(hier.glob("kubepods*")):
            if top.is_dir():
                for dirpath, _dirs, _files in os.walk(top):
                    found.append(Path(dirpath))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kubepods_pids() -> set[int]:
    pids = set()
    for cg in _kubepods_cgroups():
        try:
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return pids


# ---- certificates (python3-cryptography) ----

def _pki(pki: Path, node_name: str) -> None:
    """CA, serving and client certificates, the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    pem_key = lambda k: k.private_bytes(serialization.Encoding.PEM,  # noqa: E731
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())

    def name(cn, orgs=()):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
                         + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("ztunnel-kube-ca")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(pem_key(ca_key))

    def issue(file, cn, orgs=(), dns=(), ips=(), server=False, client=False):
        key = ec.generate_private_key(ec.SECP256R1())
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (x509.CertificateBuilder().subject_name(name(cn, orgs)).issuer_name(ca_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                          content_commitment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca_key.public_key()), critical=False))
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                 for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (pki / f"{file}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (pki / f"{file}.key").write_bytes(pem_key(key))

    svc_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    issue("apiserver", "kube-apiserver",
          dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local", "localhost", node_name),
          ips=("127.0.0.1", svc_ip), server=True)
    issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",),
          client=True)
    issue("admin", "kubernetes-admin", ("system:masters",), client=True)
    issue("front-proxy-client", "front-proxy-client", client=True)
    issue("controller-manager", "system:kube-controller-manager", client=True)
    issue("scheduler", "system:kube-scheduler", client=True)
    issue("kubelet-client", f"system:node:{node_name}", ("system:nodes",), client=True)
    issue("kubelet-serving", node_name, dns=(node_name, "localhost"), ips=("127.0.0.1",),
          server=True)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(pem_key(sa))
    (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for f in pki.glob("*.key"):
        f.chmod(0o600)


def _kubeconfig(path: Path, server: str, pki: Path, cert: str, user: str) -> None:
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "ztunnel-kube", "cluster": {
            "server": server, "certificate-authority-data": b64(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(pki / f"{cert}.crt"),
            "client-key-data": b64(pki / f"{cert}.key")}}],
        "contexts": [{"name": "ztunnel-kube", "context": {
            "cluster": "ztunnel-kube", "user": user, "namespace": "default"}}],
        "current-context": "ztunnel-kube",
    }
    path.write_text(json.dumps(cfg, indent=1) + "\n")
    path.chmod(0o600)


# ---- images ----

def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_images(cache: Path = CACHE_DIR, log=print) -> list[Path]:
    """The pause and busybox image archives, rebuilt when an input changes (pause.c, the
    gcc version, /bin/busybox, this recipe, oci_image.py)."""
    cache.mkdir(parents=True, exist_ok=True)
    tool = _sha(Path(oci_image.__file__).read_bytes(), IMAGE_RECIPE_VERSION)
    out = []
    src = (HERE / "pause.c").read_bytes()
    gcc = _run("gcc", "--version").stdout.splitlines()[0]
    pause = cache / f"pause-{_sha(src, gcc, tool)}.tar"
    if not pause.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            binary = Path(tmp) / "pause"
            _run("gcc", "-static", "-Os", "-s", "-Wall", "-Werror", "-o", binary, HERE / "pause.c")
            oci_image.build(pause, PAUSE_IMAGE, files={"/pause": (binary.read_bytes(), 0o755)},
                            entrypoint=["/pause"])
        log(f"built {pause}")
    out.append(pause)
    busybox = Path("/bin/busybox")
    etc = {
        "/etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                        0o644),
        "/etc/group": (b"root:x:0:\nnobody:x:65534:\n", 0o644),
    }
    spec = json.dumps([BUSYBOX_APPLETS, sorted((k, v[0].decode()) for k, v in etc.items())])
    echo_src = (HERE / "echo_server.c").read_bytes()
    bb = cache / f"busybox-{_sha(busybox.read_bytes(), spec, echo_src, gcc, tool)}.tar"
    if not bb.exists():
        # The pods' echo app (echo_server.c: a real listen backlog, unlike busybox nc).
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            echo = Path(tmp) / "echo-server"
            _run("gcc", "-static", "-O2", "-s", "-Wall", "-Werror", "-pthread", "-o", echo,
                 HERE / "echo_server.c")
            etc["/bin/echo-server"] = (echo.read_bytes(), 0o755)
        oci_image.build(bb, BUSYBOX_IMAGE, files={"/bin/busybox": str(busybox), **etc},
                        symlinks={f"/bin/{a}": "busybox" for a in BUSYBOX_APPLETS},
                        dirs={"/tmp": 0o1777, "/root": 0o700, "/proc": 0o555, "/sys": 0o555,
                              "/dev": 0o755},
                        cmd=["sh"])
        log(f"built {bb}")
    out.append(bb)
    keep = {p.name for p in out}
    for old in list(cache.glob("pause-*.tar")) + list(cache.glob("busybox-*.tar")):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return out


class KubeNode:
    """One single-node cluster. Attributes: state_dir, kubeconfig, api_server_url,
    node_name, cni_bin_dir, cni_conf_dir, containerd_socket, log_dir, pki_dir, ports,
    busybox_image, pause_image; start_seconds/stop_seconds after start()/stop()."""

    busybox_image = BUSYBOX_IMAGE
    pause_image = PAUSE_IMAGE

    def __init__(self, state_dir: str | os.PathLike | None = None, log=None):
        self.state_dir = Path(state_dir or os.environ.get("ZTUNNEL_KUBE_DIR", DEFAULT_STATE_DIR))
        self.state_dir = self.state_dir.absolute()
        self._log = log or (lambda msg: print(f"[kube] {msg}", file=sys.stderr, flush=True))
        self.pki_dir = self.state_dir / "pki"
        self.log_dir = self.state_dir / "logs"
        self.pid_dir = self.state_dir / "pids"
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        self.cni_bin_dir = self.state_dir / "cni" / "bin"
        self.cni_conf_dir = self.state_dir / "cni" / "net.d"
        self.cni_ipam_dir = self.state_dir / "cni" / "ipam"
        self.containerd_dir = self.state_dir / "containerd"
        self.containerd_socket = self.containerd_dir / "containerd.sock"
        self.kubelet_dir = self.state_dir / "kubelet"
        self.state_file = self.state_dir / "state.json"
        self.node_name = socket.gethostname().lower()
        self.state: dict = {}
        self.ports: dict = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._ssl_ctx = None
        self._owner = False
        self._stopping = False
        self._starting = False
        self._prev_handlers: dict = {}
        self._netns_kept_shared = False
        self._shim_ids: set[str] = set()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self.start_seconds = None
        self.stop_seconds = None
        self.stop_steps: dict[str, float] = {}
        self._load_state()

    # ---- state ----

    @property
    def api_server_url(self) -> str | None:
        port = self.ports.get("apiserver")
        return f"https://127.0.0.1:{port}" if port else None

    def _load_state(self) -> None:
        try:
            self.state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        self.ports = self.state.get("ports", {})
        self.node_name = self.state.get("node_name", self.node_name)

    def _save_state(self) -> None:
        self.state["ports"] = self.ports
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        os.replace(tmp, self.state_file)

    def _pid(self, name: str) -> int | None:
        """The live pid of a component from its pid file (checked against its argv)."""
        try:
            pid = int((self.pid_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        argv = _cmdline(pid)
        if not _alive(pid) or not argv or Path(argv[0]).name != name:
            return None
        return pid

    def running(self) -> dict[str, int | None]:
        return {c: self._pid(c) for c in COMPONENTS}

    def is_up(self) -> bool:
        """All components alive and the API server ready."""
        if not self.state or not all(self.running().values()):
            return False
        try:
            return self.api("GET", "/readyz", timeout=3)[0] == 200
        except OSError:
            return False

    def status(self) -> dict:
        st = {"state_dir": str(self.state_dir), "up": self.is_up(),
              "components": self.running(), "kubeconfig": str(self.kubeconfig),
              "api_server_url": self.api_server_url, "node": self.node_name}
        if st["up"]:
            code, node = self.api("GET", f"/api/v1/nodes/{self.node_name}")
            if code == 200:
                st["node_ready"] = self._node_ready(node)
        return st

    # ---- start ----

    def start(self, timeout: float = 180.0) -> float:
        """Builds/imports images, starts every component and waits until the node is
        Ready (no not-ready taint) and the `default` ServiceAccount exists. Returns the
        seconds it took. On any failure (also Ctrl-C, SIGTERM) everything is torn down."""
        if os.geteuid() != 0:
            raise KubeError("the node needs root")
        with self._locked():
            return self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> float:
        t0 = time.monotonic()
        if self.is_up():
            if not self._orphaned():
                raise KubeError(f"a node is already up (state dir {self.state_dir}); run "
                                f"`node.py down` or set ZTUNNEL_KUBE_REUSE=1")
            self._log(f"the node of a session that died (pid {self.state.get('owner_pid')}) "
                      f"is still up; tearing it down")
        if self.state_file.exists() or self.leftovers():
            self._log("cleaning up what an earlier run left behind")
            self.stop()
            t0 = time.monotonic()  # the start time measured is from a clean host
        self._owner = True
        self._install_handlers()
        self._starting = True
        try:
            self._start(t0 + timeout)
        except BaseException as e:
            self._log(f"start failed: {e!r}; tearing down (logs in {self.log_dir})")
            self.stop()
            raise
        finally:
            self._starting = False
        self.start_seconds = time.monotonic() - t0
        self._log(f"node {self.node_name} Ready in {self.start_seconds:.1f} s "
                  f"(kubeconfig {self.kubeconfig})")
        return self.start_seconds

    def _start(self, deadline: float) -> None:
        images = build_images(log=self._log)
        if self.state_dir.exists():
            self._empty_state_dir(keep=())
        for d in (self.pki_dir, self.log_dir, self.pid_dir, self.cni_bin_dir, self.cni_conf_dir,
                  self.cni_ipam_dir, self.containerd_dir, self.kubelet_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        names = ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler",
                 "kubelet", "kubelet_healthz")
        self.ports = dict(zip(names, _free_ports(len(names))))
        # Record the host before changing it, so a crashed run can be undone.
        self.state = {
            "version": 1, "node_name": self.node_name, "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()), "detached": False,
            "sysctls": {k: v for k in SYSCTLS if (v := _read_sysctl(k)) is not None},
            "created_dirs": [str(d) for d in (NETNS_DIR, LIBCNI_CACHE, POD_LOG_LINKS,
                                              SHIM_SOCKET_ROOT, LIBMOUNT_DIR,
                                              DEVICE_PLUGIN_SOCKET.parent.parent)
                             if not d.exists()],
            "hosts_added": False, "netns_mount_made": False, "argv": {},
        }
        self._save_state()
        self._host_setup()
        # An uncaptured connection to a VIP reaches the host through the pods' service
        # route; without kube-proxy nothing would translate it, so it must end here
        # rather than follow the host's default route out of the machine.
        _run("ip", "route", "replace", "unreachable", SERVICE_CIDR)
        _pki(self.pki_dir, self.node_name)
        self._write_configs()
        self._spawn("etcd")
        self._spawn("containerd")
        self._spawn("kube-apiserver")
        self._wait(lambda: self.containerd_socket.exists() and _run(
            "ctr", "--address", self.containerd_socket, "version", check=False,
            timeout=10).returncode == 0, deadline, "containerd")
        for archive in images:
            self.import_image(archive)
        self._spawn("kubelet")
        self._wait(lambda: self._api_ok("/readyz"), deadline, "kube-apiserver /readyz")
        self._spawn("kube-controller-manager")
        self._spawn("kube-scheduler")

        def ready():
            code, node = self.api("GET", f"/api/v1/nodes/{self.node_name}")
            return code == 200 and self._node_ready(node) and self._api_ok(
                "/api/v1/namespaces/default/serviceaccounts/default") and self._api_ok(
                "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        self._wait(ready, deadline, f"node {self.node_name} Ready and the default ServiceAccount")

    def _host_setup(self) -> None:
        # The node name must resolve to 127.0.0.1 (apiserver -> kubelet over loopback).
        if not self._hosts_maps_node():
            with open(HOSTS_FILE, "a") as f:
                f.write(f"127.0.0.1\t{self.node_name}\t{HOSTS_MARK}\n")
            self.state["hosts_added"] = True
            self._save_state()
        # Pitfall 3: / is a private mount here; /run/netns must be a shared mount point.
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        if not _is_mountpoint(NETNS_DIR):
            self.state["netns_mount_made"] = True
            self._save_state()
            _run("mount", "--bind", NETNS_DIR, NETNS_DIR)
        else:
            self._log(f"{NETNS_DIR} is already a mount point (not ours; left as it is)")
        _run("mount", "--make-shared", NETNS_DIR)
        # overlayfs for containerd if it mounts on the state dir's filesystem
        # (ZTUNNEL_KUBE_SNAPSHOTTER=native forces the fallback).
        forced = os.environ.get("ZTUNNEL_KUBE_SNAPSHOTTER")
        self.state["snapshotter"] = forced or ("overlayfs" if self._overlay_works() else "native")
        self._save_state()

    def _hosts_maps_node(self) -> bool:
        for line in HOSTS_FILE.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if fields and fields[0] == "127.0.0.1" and self.node_name in fields[1:]:
                return True
        return False

    def _overlay_works(self) -> bool:
        base = self.state_dir / "overlay-check"
        dirs = [base / d for d in ("lower", "upper", "work", "merged")]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        (dirs[0] / "f").write_text("x")
        try:
            r = _run("mount", "-t", "overlay", "overlay", "-o",
                     f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}", dirs[3],
                     check=False)
            ok = r.returncode == 0 and (dirs[3] / "f").read_text() == "x"
            if r.returncode == 0:
                _run("umount", dirs[3], check=False)
            if not ok:
                self._log(f"overlayfs does not work here ({r.stderr.strip()}); using native")
            return ok
        finally:
            if not _is_mountpoint(dirs[3]):
                shutil.rmtree(base, ignore_errors=True)

    def _write_configs(self) -> None:
        sd, p, pki = self.state_dir, self.ports, self.pki_dir
        server = self.api_server_url
        for name, cert, user in (("admin", "admin", "kubernetes-admin"),
                                 ("controller-manager", "controller-manager",
                                  "system:kube-controller-manager"),
                                 ("scheduler", "scheduler", "system:kube-scheduler"),
                                 ("kubelet", "kubelet-client", f"system:node:{self.node_name}")):
            _kubeconfig(sd / f"{name}.kubeconfig", server, pki, cert, user)
        # CNI: a harness-owned bin dir (a later plugin can be installed next to these).
        for plugin in sorted(SYSTEM_CNI_BIN.iterdir()):
            link = self.cni_bin_dir / plugin.name
            if not link.exists():
                link.symlink_to(plugin)
        conflist = {
            "cniVersion": "1.0.0", "name": CNI_NETWORK,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                         # No default route (pods reach nothing outside), but the
                         # service range goes to the gateway as a default route would:
                         # connect() to a VIP must reach the pod's netfilter OUTPUT,
                         # where the mesh captures it (there is no kube-proxy here).
                         "routes": [{"dst": SERVICE_CIDR}], "dataDir": str(self.cni_ipam_dir)},
            }],
        }
        (self.cni_conf_dir / CNI_CONFLIST).write_text(json.dumps(conflist, indent=1) + "\n")
        cd = self.containerd_dir
        (cd / "config.toml").write_text(f"""\
version = 2
root = "{cd / 'root'}"
state = "{cd / 'state'}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{cd / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{oci_image.normalize_ref(PAUSE_IMAGE)}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{self.state['snapshotter']}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{cd / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.cni_bin_dir}"
    conf_dir = "{self.cni_conf_dir}"
    max_conf_num = 1
""")
        ca = pki / "ca.crt"
        kubelet_cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": p["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": p["kubelet_healthz"],
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {"anonymous": {"enabled": False},
                               "webhook": {"enabled": True, "cacheTTL": "10s"},
                               "x509": {"clientCAFile": str(ca)}},
            "authorization": {"mode": "Webhook", "webhook": {
                "cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "5s"}},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "failSwapOn": False,
            "clusterDomain": "cluster.local",
            "oomScoreAdj": 0,  # root lacks CAP_SYS_RESOURCE: no negative adjustments
            "podLogsDir": str(sd / "pod-logs"),
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "shutdownGracePeriod": "0s",
            "rotateCertificates": False, "serverTLSBootstrap": False,
        }
        (sd / "kubelet-config.json").write_text(json.dumps(kubelet_cfg, indent=1) + "\n")
        b = KUBE_BIN_DIR
        self.state["argv"] = {
            "etcd": [
                str(b / "etcd"), "--name", "ztunnel-kube", "--data-dir", str(sd / "etcd"),
                f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd_peer']}",
                f"--initial-cluster=ztunnel-kube=http://127.0.0.1:{p['etcd_peer']}",
                "--initial-cluster-state=new", "--unsafe-no-fsync", "--log-level=warn"],
            "containerd": ["/usr/bin/containerd", "--config", str(cd / "config.toml")],
            "kube-apiserver": [
                str(b / "kube-apiserver"),
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={p['apiserver']}",
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={ca}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={ca}",
                "--kubelet-preferred-address-types=Hostname,InternalIP",
                "--endpoint-reconciler-type=none",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false",
                # The aggregation layer's request-header auth (and no "missing content for
                # CA bundle" errors in the controller-manager and scheduler).
                f"--requestheader-client-ca-file={ca}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}"],
            "kube-controller-manager": [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={sd / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={sd / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={sd / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={p['controller_manager']}",
                "--leader-elect=false", "--use-service-account-credentials=true",
                # An API server outage of a minute or two (stop_apiserver) must not turn
                # the node NotReady/unreachable-tainted when it comes back.
                "--node-monitor-grace-period=150s",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={ca}",
                f"--cluster-signing-cert-file={ca}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false"],
            "kube-scheduler": [
                str(b / "kube-scheduler"),
                f"--kubeconfig={sd / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={sd / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={sd / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}",
                "--leader-elect=false", "--profiling=false"],
            "kubelet": [
                str(b / "kubelet"), f"--config={sd / 'kubelet-config.json'}",
                f"--kubeconfig={sd / 'kubelet.kubeconfig'}", f"--root-dir={self.kubelet_dir}"],
        }
        self._save_state()

    def _env(self) -> dict:
        return {"PATH": ENV_PATH, "HOME": str(self.state_dir), "LANG": "C.UTF-8",
                "TMPDIR": "/tmp"}

    def _spawn(self, name: str) -> None:
        argv = self.state["argv"][name]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self._env(), cwd=self.state_dir)
        self._procs[name] = proc
        (self.pid_dir / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _wait(self, cond, deadline: float, what: str, watch=True) -> None:
        while True:
            for name, proc in self._procs.items() if watch else ():
                if proc.poll() is not None:
                    raise KubeError(f"{name} exited ({proc.returncode}) while waiting for "
                                    f"{what}:\n{_tail(self.log_dir / f'{name}.log')}")
            try:
                if cond():
                    return
            except (OSError, KubeError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.1)

    @staticmethod
    def _node_ready(node: dict) -> bool:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        taints = [t for t in node.get("spec", {}).get("taints", [])
                  if t.get("key", "").startswith("node.kubernetes.io/")]
        return conds.get("Ready") == "True" and not taints

    # ---- the API server, for tests ----

    def stop_apiserver(self, timeout: float = 5.0) -> None:
        """Stops only the API server (etcd and the rest keep running): SIGTERM, SIGKILL
        after `timeout` (its graceful shutdown hangs ~60 s on open watches otherwise)."""
        self._stop_component("kube-apiserver", timeout, quiet=True)

    def start_apiserver(self, timeout: float = 90.0, wait_node: bool = True,
                        restart_clients=("kube-scheduler", "kube-controller-manager",
                                         "kubelet")) -> float:
        """Starts the API server again with the same certificates, port and etcd;
        returns the seconds until /readyz answered and (wait_node) the node is Ready
        with its lease renewed after the restart.

        After an outage of a minute client-go's watch backoff (30 s cap, jitter up to 2x)
        keeps the scheduler and the kubelet from seeing new pods for up to ~60 s (seen:
        a pod created after the restart was scheduled after 51 s, and once scheduling
        was fixed it was not started by the kubelet within 60 s). So by default the
        scheduler, the controller-manager and the kubelet are restarted once the API
        server is ready (restart_clients=() keeps them): running pods and their
        containers are untouched; a container with a readiness probe is not Ready until
        its first probe after the kubelet restart. Other clients (a node agent's
        informers) recover on their own backoff."""
        if self._pid("kube-apiserver"):
            raise KubeError("kube-apiserver is running")
        t0 = time.monotonic()
        since = datetime.datetime.now(datetime.timezone.utc)
        self._spawn("kube-apiserver")
        self._wait(lambda: self._api_ok("/readyz"), t0 + timeout, "kube-apiserver /readyz",
                   watch=False)
        for name in restart_clients:
            self._stop_component(name, 15, quiet=True)
            self._spawn(name)
        if wait_node:
            def renewed():
                code, node = self.api("GET", f"/api/v1/nodes/{self.node_name}")
                code2, lease = self.api("GET", "/apis/coordination.k8s.io/v1/namespaces/"
                                        f"kube-node-lease/leases/{self.node_name}")
                if code != 200 or code2 != 200 or not self._node_ready(node):
                    return False
                renew = datetime.datetime.strptime(lease["spec"]["renewTime"][:19],
                                                   "%Y-%m-%dT%H:%M:%S")
                return renew.replace(tzinfo=datetime.timezone.utc) >= since.replace(
                    microsecond=0)
            self._wait(renewed, t0 + timeout, "node Ready after the API server restart",
                       watch=False)
        return time.monotonic() - t0

    # ---- helpers for tests ----

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_ctx is None:
            ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
            ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
            self._ssl_ctx = ctx
        return self._ssl_ctx

    def api(self, method: str, path: str, body=None, timeout: float = 10.0,
            content_type: str = "application/json"):
        """One request to the API server as cluster admin: (status, parsed JSON or text)."""
        if not self.ports.get("apiserver"):
            raise KubeError("no API server port (node not started)")
        conn = http.client.HTTPSConnection("127.0.0.1", self.ports["apiserver"],
                                           context=self._ssl(), timeout=timeout)
        try:
            data = body if body is None or isinstance(body, (bytes, str)) else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": content_type,
                                                           "Accept": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            if resp.getheader("Content-Type", "").startswith("application/json"):
                return resp.status, json.loads(raw)
            return resp.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def _api_ok(self, path: str) -> bool:
        try:
            return self.api("GET", path, timeout=5)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def kubectl(self, *args, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> str:
        """kubectl 1.34 with the admin kubeconfig; returns stdout."""
        cmd = [str(KUBE_BIN_DIR / "kubectl"), f"--kubeconfig={self.kubeconfig}",
               f"--cache-dir={self.state_dir / 'kubectl-cache'}", *map(str, args)]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PATH": ENV_PATH})
        if check and proc.returncode != 0:
            raise KubeError(f"kubectl {shlex.join(map(str, args))} failed ({proc.returncode}): "
                            f"{proc.stderr.strip()}")
        return proc.stdout

    def helm(self, *args, check: bool = True, timeout: float = 300.0) -> str:
        """helm 3.19 against this node (its caches under the state dir); returns stdout."""
        env = {**os.environ, "PATH": ENV_PATH, "KUBECONFIG": str(self.kubeconfig),
               **{f"HELM_{k}_HOME": str(self.state_dir / "helm" / k.lower())
                  for k in ("CACHE", "CONFIG", "DATA")}}
        proc = subprocess.run([str(KUBE_BIN_DIR / "helm"), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise KubeError(f"helm {shlex.join(map(str, args))} failed ({proc.returncode}): "
                            f"{proc.stderr.strip()}")
        return proc.stdout

    @staticmethod
    def _manifest(obj) -> str:
        if isinstance(obj, str):
            return obj
        if isinstance(obj, (list, tuple)):
            obj = {"apiVersion": "v1", "kind": "List", "items": list(obj)}
        return json.dumps(obj)

    def apply(self, obj_or_yaml, namespace: str | None = None) -> str:
        """kubectl apply of a dict, a list of dicts, or YAML/JSON text."""
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=self._manifest(obj_or_yaml))

    def delete(self, what, name: str | None = None, namespace: str | None = None,
               wait: bool = True, timeout: float = 60.0, grace_period: int | None = None,
               ignore_not_found: bool = True) -> str:
        """Deletes a manifest (dict/list/text) or `kind [name]`; waits unless wait=False."""
        args = ["delete", f"--wait={'true' if wait else 'false'}", f"--timeout={int(timeout)}s"]
        if ignore_not_found:
            args.append("--ignore-not-found")
        if grace_period is not None:
            args.append(f"--grace-period={grace_period}")
        if namespace:
            args += ["-n", namespace]
        manifest = isinstance(what, (dict, list, tuple)) or (isinstance(what, str) and
                                                              ("\n" in what or "{" in what))
        if manifest:
            return self.kubectl(*args, "-f", "-", input=self._manifest(what),
                                timeout=timeout + 10)
        return self.kubectl(*args, what, *([name] if name else []), timeout=timeout + 10)

    def pod(self, namespace: str, name: str) -> dict:
        code, obj = self.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        if code != 200:
            raise KubeError(f"pod {namespace}/{name}: {code} {obj}")
        return obj

    def wait_pod_ready(self, namespace: str, name: str, timeout: float = 60.0) -> dict:
        """Waits until the pod's Ready condition is True; returns the pod."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code, obj = self.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
            if code == 200:
                last = obj
                conds = {c["type"]: c["status"] for c in obj["status"].get("conditions", [])}
                if conds.get("Ready") == "True":
                    return obj
                if obj["status"].get("phase") in ("Failed", "Succeeded"):
                    break
            time.sleep(0.1)
        raise TimeoutError(f"pod {namespace}/{name} not Ready: "
                           f"{json.dumps((last or {}).get('status'), indent=1)}\nevents:\n"
                           f"{self.kubectl('get', 'events', '-n', namespace, check=False)}")

    def wait_pod_gone(self, namespace: str, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")[0] == 404:
                return
            time.sleep(0.1)
        raise TimeoutError(f"pod {namespace}/{name} still exists")

    def exec(self, namespace: str, pod: str, cmd, container: str | None = None,
             input: str | None = None, check: bool = True, timeout: float = 60.0) -> str:
        """kubectl exec (over loopback: apiserver -> kubelet -> containerd); cmd is a list
        or a shell command line (run with sh -c). Returns stdout."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        args = ["exec", *(["-i"] if input is not None else []), "-n", namespace, pod,
                *(["-c", container] if container else []), "--", *argv]
        return self.kubectl(*args, input=input, check=check, timeout=timeout)

    def pod_pids(self, namespace: str, name: str) -> list[int]:
        """Host pids of the pod's processes (pause first), found by the pod UID in
        /proc/<pid>/cgroup (cgroupfs driver: .../kubepods/<qos>/pod<UID>/...)."""
        needle = "pod" + self.pod(namespace, name)["metadata"]["uid"]
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if needle in Path(f"/proc/{entry}/cgroup").read_text():
                        pids.append(int(entry))
                except OSError:
                    pass
        pause = [p for p in pids if Path(_cmdline(p)[0] if _cmdline(p) else "").name == "pause"]
        return pause + sorted(set(pids) - set(pause))

    def pod_netns_path(self, namespace: str, name: str) -> str:
        """/proc/<pid>/ns/net of a process of the pod (valid while the sandbox lives)."""
        pids = self.pod_pids(namespace, name)
        if not pids:
            raise KubeError(f"no process of pod {namespace}/{name} found")
        return f"/proc/{pids[0]}/ns/net"

    def pod_netns_pin(self, namespace: str, name: str) -> str:
        """containerd's pin of the pod's netns (/run/netns/cni-...)."""
        ino = os.stat(self.pod_netns_path(namespace, name)).st_ino
        for pin in sorted(NETNS_DIR.glob("cni-*")):
            try:
                if pin.stat().st_ino == ino:
                    return str(pin)
            except OSError:
                pass
        raise KubeError(f"no /run/netns pin for pod {namespace}/{name}")

    def import_image(self, archive: str | os.PathLike) -> list[str]:
        """Imports an OCI/docker image archive into containerd's k8s.io namespace;
        returns the image names imported."""
        out = _run("ctr", "--address", self.containerd_socket, "-n", "k8s.io", "images",
                   "import", "--snapshotter", self.state.get("snapshotter", "overlayfs"),
                   archive, timeout=300).stdout
        names = re.findall(r"unpacking (\S+) \(", out)
        self._log(f"imported {', '.join(names) or archive}")
        return names

    def processes(self) -> list[dict]:
        """Our live processes (components, shims, pod processes): pid, name, rss_kib,
        pss_kib (shared pages of the multi-call binary split between its processes)."""
        out = []
        for pid, argv in self._scan_processes():
            out.append({"pid": pid, "name": Path(argv[0]).name if argv else "?",
                        "rss_kib": _rss_kib(pid), "pss_kib": _pss_kib(pid),
                        "cmdline": " ".join(argv)[:200]})
        return out

    # ---- stop ----

    def stop(self, grace_period: int = 1) -> float:
        """Tears everything down (also what a crashed run left, found from the state
        dir and by name): pods deleted gracefully, kubelet, CRI tasks, containerd,
        scheduler, controller-manager, apiserver, etcd, stray processes, mounts,
        cgroups, netns pins, the bridge, iptables chains, sysctls, /etc/hosts, the
        /run/netns mount, host dirs; the state dir is removed except logs/.
        Returns the seconds it took; never raises for a failed step (see leftovers())."""
        if self._stopping:
            return 0.0
        if not self.state_dir.is_dir():  # nothing to coordinate with; clean by name
            return self._stop_locked(grace_period)
        with self._locked():
            return self._stop_locked(grace_period)

    def _stop_locked(self, grace_period: int) -> float:
        self._stopping = True
        t0 = time.monotonic()
        in_main = threading.current_thread() is threading.main_thread()
        prev_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            if not self.state:
                self._load_state()
            steps = [
                ("delete pods", lambda: self._delete_all_pods(grace_period)),
                ("stop kubelet", lambda: self._stop_component("kubelet", 15)),
                ("CNI DEL of leftover sandboxes", self._cni_del_leftovers),
                ("kill CRI tasks", self._kill_cri_tasks),
                ("stop containerd", lambda: self._stop_component("containerd", 10)),
                ("stop control plane", lambda: self._stop_components(
                    ("kube-scheduler", "kube-controller-manager", "kube-apiserver"), 5,
                    quiet=True)),
                ("stop etcd", lambda: self._stop_component("etcd", 10)),
                ("kill strays", self._kill_strays),
                ("netns pins", self._remove_netns_pins),
                ("unmount", self._unmount_all),
                ("cgroups", self._remove_cgroups),
                ("bridge", self._remove_bridge),
                ("service route", self._remove_service_route),
                ("iptables", self._remove_iptables),
                ("sysctls", self._restore_sysctls),
                ("/etc/hosts", self._restore_hosts),
                ("/run/netns mount", self._undo_netns_mount),
                ("shim sockets", self._remove_shim_sockets),
                ("host dirs", self._clean_host_dirs),
                ("state dir", self._clean_state_dir),
            ]
            self.stop_steps = {}
            for what, fn in steps:
                t_step = time.monotonic()
                try:
                    fn()
                except Exception as e:  # teardown goes on
                    self._log(f"teardown step {what!r} failed: {e!r}")
                self.stop_steps[what] = round(time.monotonic() - t_step, 2)
        finally:
            self._stopping = False
            self._procs.clear()
            self._ssl_ctx = None
            if self._owner:
                self._remove_handlers()
                self._owner = False
            if in_main:
                signal.signal(signal.SIGINT, prev_int)
        self.stop_seconds = time.monotonic() - t0
        slow = ", ".join(f"{k} {v:g} s" for k, v in self.stop_steps.items() if v >= 0.3)
        self._log(f"node torn down in {self.stop_seconds:.1f} s" + (f" ({slow})" if slow else ""))
        return self.stop_seconds

    def _delete_all_pods(self, grace_period: int) -> None:
        if not self.state or not self._pid("kube-apiserver") or not self._api_ok("/readyz"):
            return
        # Controllers first, or they recreate the pods.
        self.kubectl("delete", "daemonsets,deployments,replicasets,statefulsets,jobs,cronjobs",
                     "--all", "-A", "--wait=false", check=False, timeout=30)
        self.kubectl("delete", "pods", "--all", "-A", f"--grace-period={grace_period}",
                     "--wait=false", check=False, timeout=30)
        if not self._pid("kubelet"):
            return
        deadline = time.monotonic() + 30 + grace_period
        while time.monotonic() < deadline:
            code, pods = self.api("GET", "/api/v1/pods")
            if code == 200 and not pods.get("items"):
                break
            time.sleep(0.2)
        else:
            self._log("pods still present after delete; going on")
        # The kubelet stops sandboxes (CNI DEL, netns pin removed) of deleted pods.
        while time.monotonic() < deadline and self._cri_tasks():
            time.sleep(0.2)

    def _ctr(self, *args, check=False, timeout=30) -> subprocess.CompletedProcess:
        return _run("ctr", "--address", self.containerd_socket, "-n", "k8s.io", *args,
                    check=check, timeout=timeout)

    def _cri_tasks(self) -> list[str]:
        if not self._pid("containerd"):
            return []
        r = self._ctr("tasks", "ls", "-q", timeout=10)
        return r.stdout.split() if r.returncode == 0 else []

    def _kill_cri_tasks(self) -> None:
        tasks = self._cri_tasks()
        for t in tasks:
            self._ctr("tasks", "kill", "-a", "-s", "SIGKILL", t)
        for t in tasks:
            self._ctr("tasks", "rm", "-f", t)
        if tasks:
            self._log(f"killed {len(tasks)} CRI task(s) left after the kubelet")

    def _cni_del_leftovers(self) -> None:
        """CNI DEL for every sandbox the kubelet did not stop, from libcni's cache
        (what containerd would run), so IPAM and chained plugins release their state."""
        results = LIBCNI_CACHE / "results"
        conflist = self.cni_conf_dir / CNI_CONFLIST
        if not results.is_dir() or not conflist.exists():
            return
        conf = json.loads(conflist.read_text())
        for f in sorted(results.glob(f"{CNI_NETWORK}-*")):
            try:
                cached = json.loads(f.read_text())
            except ValueError:
                continue
            result = cached.get("result") or {}
            netns = next((i.get("sandbox") for i in result.get("interfaces", [])
                          if i.get("sandbox")), "")
            if netns and not os.path.exists(netns):
                netns = ""
            env = {"PATH": ENV_PATH, "CNI_COMMAND": "DEL",
                   "CNI_CONTAINERID": cached.get("containerId", ""),
                   "CNI_NETNS": netns, "CNI_IFNAME": cached.get("ifName", "eth0"),
                   "CNI_PATH": str(self.cni_bin_dir),
                   "CNI_ARGS": ";".join(f"{a[0]}={a[1]}" for a in cached.get("cniArgs") or [])}
            for plugin in reversed(conf["plugins"]):
                stdin = {**plugin, "name": conf["name"], "cniVersion": conf["cniVersion"]}
                if result:
                    stdin["prevResult"] = result
                r = subprocess.run([str(self.cni_bin_dir / plugin["type"])], env=env,
                                   input=json.dumps(stdin), capture_output=True, text=True,
                                   timeout=30)
                if r.returncode != 0:
                    self._log(f"CNI DEL {plugin['type']} {env['CNI_CONTAINERID'][:12]}: "
                              f"{r.stdout.strip()} {r.stderr.strip()}")
            f.unlink(missing_ok=True)
            self._log(f"CNI DEL for leftover sandbox {env['CNI_CONTAINERID'][:12]}")

    def _stop_component(self, name: str, timeout: float, quiet: bool = False) -> None:
        self._stop_components((name,), timeout, quiet)

    def _stop_components(self, names, timeout: float, quiet: bool = False) -> None:
        pids = {n: self._pid(n) for n in names}
        pids = {n: p for n, p in pids.items() if p}
        for p in pids.values():
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._wait_exit(pids, timeout, quiet)
        for n in names:
            (self.pid_dir / f"{n}.pid").unlink(missing_ok=True)
            proc = self._procs.pop(n, None)
            if proc is not None:
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass

    def _wait_exit(self, pids: dict, timeout: float, quiet: bool = False) -> None:
        deadline = time.monotonic() + timeout
        for name, pid in pids.items():
            proc = self._procs.get(name)
            while _alive(pid) and time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.05)
            if _alive(pid):
                if not quiet:
                    self._log(f"{name} ({pid}) did not stop on SIGTERM in {timeout:g} s; SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                end = time.monotonic() + 5
                while _alive(pid) and time.monotonic() < end:
                    if proc is not None and proc.poll() is not None:
                        break
                    time.sleep(0.05)

    def _scan_processes(self) -> list[tuple[int, list[str]]]:
        """Live processes of ours: a binary under KUBE_BIN_DIR (etcd, the kube multi-call
        binary, helm) or containerd/its shims/ctr/runc naming our state dir in argv (or,
        for the kube binaries, in KUBECONFIG), and anything in a kubepods cgroup. Other
        users of the same binaries (another harness on the machine) are left alone."""
        kube = str(KUBE_BIN_DIR.resolve()) + "/"
        sd = str(self.state_dir)
        in_pods = _kubepods_pids()
        me = {os.getpid()}
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in me:
                continue
            pid = int(entry)
            if not _alive(pid):
                continue
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                exe = ""
            argv = _cmdline(pid)
            names_us = any(sd in a for a in argv)
            if exe.startswith(kube) and not names_us:
                try:
                    names_us = f"KUBECONFIG={sd}".encode() in \
                        Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    pass
            ours = pid in in_pods or (names_us and (exe.startswith(kube) or Path(
                exe.split(" (deleted)")[0]).name.startswith(("containerd", "ctr", "runc"))))
            if ours:
                found.append((pid, argv))
        return found

    def _kill_strays(self) -> None:
        for _round in range(3):
            procs = self._scan_processes()
            if not procs:
                return
            for pid, argv in procs:
                self._log(f"killing stray {pid} {' '.join(argv)[:120]}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 5
            while time.monotonic() < end and any(_alive(p) for p, _ in procs):
                time.sleep(0.05)

    def _remove_netns_pins(self) -> None:
        for pin in sorted(NETNS_DIR.glob("cni-*")) if NETNS_DIR.is_dir() else []:
            if _is_mountpoint(pin):
                if _run("umount", pin, check=False).returncode != 0:
                    _run("umount", "-l", pin, check=False)
            try:
                pin.unlink()
            except OSError as e:
                self._log(f"cannot remove {pin}: {e}")

    def _our_mounts(self) -> list[str]:
        sd = str(self.state_dir)
        return [m for m in _mountinfo() if m == sd or m.startswith(sd + "/")
                or m.startswith(str(NETNS_DIR / "cni-"))]

    def _unmount_all(self) -> None:
        for _round in range(10):
            mounts = self._our_mounts()
            if not mounts:
                return
            for m in sorted(set(mounts), key=lambda x: x.count("/"), reverse=True):
                if _run("umount", m, check=False).returncode != 0:
                    _run("umount", "-l", m, check=False)

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            left = _kubepods_cgroups()
            if not left:
                return
            for cg in left:
                try:
                    cg.rmdir()
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise KubeError(f"cgroups left: {[str(c) for c in _kubepods_cgroups()]}")
            time.sleep(0.1)

    @staticmethod
    def _service_route_present() -> bool:
        return bool(_run("ip", "route", "show", "type", "unreachable", SERVICE_CIDR,
                         check=False).stdout.strip())

    def _remove_service_route(self) -> None:
        if self._service_route_present():
            _run("ip", "route", "del", "unreachable", SERVICE_CIDR)

    def _remove_bridge(self) -> None:
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            _run("ip", "link", "del", BRIDGE)

    @staticmethod
    def _iptables_ours() -> dict:
        """{(cmd, table): (chains, jump rules in other chains)} for KUBE-*/CNI-* chains."""
        found = {}
        for cmd in ("iptables", "ip6tables"):
            if not shutil.which(cmd + "-save"):
                continue
            for table in ("filter", "nat", "mangle", "raw"):
                r = _run(cmd + "-save", "-t", table, check=False)
                if r.returncode != 0:
                    continue
                chains, jumps = [], []
                for line in r.stdout.splitlines():
                    if line.startswith((":KUBE-", ":CNI-")):
                        chains.append(line[1:].split()[0])
                    elif line.startswith("-A ") and re.search(r" -[jg] (KUBE-|CNI-)", line) \
                            and not line.split()[1].startswith(("KUBE-", "CNI-")):
                        jumps.append(line)
                if chains or jumps:
                    found[(cmd, table)] = (chains, jumps)
        return found

    def _remove_iptables(self) -> None:
        for (cmd, table), (chains, jumps) in self._iptables_ours().items():
            lines = [f"*{table}"] + ["-D" + j[2:] for j in jumps] + \
                    [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains] + ["COMMIT", ""]
            _run(cmd + "-restore", "--noflush", "-w", input="\n".join(lines))

    def _restore_sysctls(self) -> None:
        for key, value in self.state.get("sysctls", {}).items():
            if _read_sysctl(key) != value:
                _sysctl_path(key).write_text(value + "\n")

    def _restore_hosts(self) -> None:
        text = HOSTS_FILE.read_text()
        if HOSTS_MARK in text:
            kept = [ln for ln in text.splitlines(keepends=True) if not ln.rstrip().endswith(HOSTS_MARK)]
            with open(HOSTS_FILE, "w") as f:  # in place: /etc/hosts may be a bind mount
                f.write("".join(kept))

    def _foreign_netns(self) -> list[str]:
        return [e for e in os.listdir(NETNS_DIR) if not e.startswith("cni-")] \
            if NETNS_DIR.is_dir() else []

    def _undo_netns_mount(self) -> None:
        self._netns_kept_shared = False
        if self.state.get("netns_mount_made") and _is_mountpoint(NETNS_DIR):
            foreign = self._foreign_netns()
            if foreign:
                # Unmounting would detach other tools' netns pins (ip netns add makes the
                # same shared bind mount itself, so leaving it is harmless).
                self._log(f"/run/netns stays a shared mount: other netns in it {foreign[:5]}")
                self._netns_kept_shared = True
            else:
                while _is_mountpoint(NETNS_DIR):
                    if _run("umount", NETNS_DIR, check=False).returncode != 0:
                        _run("umount", "-l", NETNS_DIR)

    def _clean_host_dirs(self) -> None:
        sd = str(self.state_dir)
        if POD_LOG_LINKS.is_dir():
            for link in POD_LOG_LINKS.iterdir():
                if link.is_symlink() and os.readlink(link).startswith(sd):
                    link.unlink()
        for f in self._cni_cache_files():
            f.unlink()
        if str(DEVICE_PLUGIN_SOCKET.parent.parent) in self.state.get("created_dirs", []) and \
                os.path.lexists(DEVICE_PLUGIN_SOCKET):
            DEVICE_PLUGIN_SOCKET.unlink()
        for d in self.state.get("created_dirs", []):
            d = Path(d)
            if d == NETNS_DIR and self._netns_kept_shared:
                continue
            if d.is_dir():
                for dirpath, _dirs, _files in sorted(os.walk(d), key=lambda x: -len(x[0])):
                    try:
                        os.rmdir(dirpath)  # only empty dirs
                    except OSError:
                        pass

    def _shim_sockets(self) -> list[Path]:
        """Sockets of our shims in /run/containerd/s (containerd 1.6 puts them there,
        named sha256(<containerd socket>/<namespace>/<id>)); a killed shim leaves its."""
        tasks = self.containerd_dir / "state" / "io.containerd.runtime.v2.task" / "k8s.io"
        if tasks.is_dir():
            self._shim_ids.update(os.listdir(tasks))
        out = []
        for cid in sorted(self._shim_ids):
            digest = hashlib.sha256(f"{self.containerd_socket}/k8s.io/{cid}".encode()).hexdigest()
            sock = SHIM_SOCKET_ROOT / "s" / digest
            if os.path.lexists(sock):
                out.append(sock)
        return out

    def _remove_shim_sockets(self) -> None:
        for sock in self._shim_sockets():
            sock.unlink()

    @staticmethod
    def _cni_cache_files() -> list[Path]:
        """libcni's cached results of our network and of containerd's loopback."""
        results = LIBCNI_CACHE / "results"
        if not results.is_dir():
            return []
        return sorted(f for pat in (f"{CNI_NETWORK}-*", "cni-loopback-*")
                      for f in results.glob(pat))

    def _clean_state_dir(self) -> None:
        if self.state_dir.is_dir():
            self._empty_state_dir(keep=("logs",))

    def _empty_state_dir(self, keep=()) -> None:
        """Removes the state dir's content (not the dir: it carries the lock), never
        while anything is mounted below it (a bind mount could lead out of it)."""
        sd = str(self.state_dir)
        mounts = [m for m in _mountinfo() if m == sd or m.startswith(sd + "/")]
        if mounts:
            raise KubeError(f"mounts left under {sd}, not removing it: {mounts[:5]}")
        for entry in self.state_dir.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # ---- leftovers ----

    def leftovers(self) -> list[str]:
        """What of ours is still present: processes, mounts (incl. the /run/netns shared
        bind and containerd/kubelet mounts under our dirs), kubepods cgroups, cni-* netns,
        the bridge, KUBE-*/CNI-* iptables chains, changed sysctls, the /etc/hosts line,
        host files and dirs the node created. Empty after stop()."""
        out = [f"process {pid} {' '.join(argv)[:160]}" for pid, argv in self._scan_processes()]
        out += [f"mount {m}" for m in self._our_mounts()]
        if self.state.get("netns_mount_made") and _is_mountpoint(NETNS_DIR) and \
                not self._foreign_netns():
            out.append(f"mount {NETNS_DIR} (shared bind made by the node)")
        cgroups = _kubepods_cgroups()
        for top in sorted({Path(*c.parts[:6]) for c in cgroups}):
            below = sum(1 for c in cgroups if c != top and top in c.parents)
            out.append(f"cgroup {top}" + (f" (+{below} below)" if below else ""))
        if NETNS_DIR.is_dir():
            out += [f"netns {NETNS_DIR / n}" for n in sorted(os.listdir(NETNS_DIR))
                    if n.startswith("cni-")]
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            out.append(f"link {BRIDGE}")
        if self._service_route_present():
            out.append(f"route unreachable {SERVICE_CIDR}")
        for (cmd, table), (chains, jumps) in self._iptables_ours().items():
            out += [f"{cmd} -t {table} chain {c}" for c in chains]
            out += [f"{cmd} -t {table} rule {j}" for j in jumps]
        for key, value in self.state.get("sysctls", {}).items():
            cur = _read_sysctl(key)
            if cur != value:
                out.append(f"sysctl {key}={cur} (was {value})")
        if HOSTS_MARK in HOSTS_FILE.read_text():
            out.append(f"/etc/hosts line marked {HOSTS_MARK!r}")
        sd = str(self.state_dir)
        if POD_LOG_LINKS.is_dir():
            out += [f"symlink {ln}" for ln in POD_LOG_LINKS.iterdir()
                    if ln.is_symlink() and os.readlink(ln).startswith(sd)]
        out += [f"cni cache {f}" for f in self._cni_cache_files()]
        out += [f"shim socket {s}" for s in self._shim_sockets()]
        for d in self.state.get("created_dirs", []):
            if Path(d).exists() and not (Path(d) == NETNS_DIR and self._foreign_netns()):
                out.append(f"dir {d} (created by the node)")
        return out

    @contextlib.contextmanager
    def _locked(self, timeout: float = 300.0):
        """An exclusive flock on the state dir for start/stop (re-entrant in this
        process), so two sessions do not start or tear down one node at the same time."""
        if self._lock_fd is not None:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise KubeError(f"another process keeps {self.state_dir} locked")
                if not waited:
                    self._log("another process is starting or stopping the node; waiting")
                    waited = True
                time.sleep(0.2)
        self._lock_fd = fd
        try:
            if waited:
                self._load_state()
            yield
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---- signals ----

    def _install_handlers(self) -> None:
        atexit.register(self._atexit)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    def _remove_handlers(self) -> None:
        atexit.unregister(self._atexit)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, prev in self._prev_handlers.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, prev)
        self._prev_handlers.clear()

    def _on_signal(self, signum, _frame):
        if self._stopping:
            return
        self._log(f"signal {signum}: tearing down")
        if not self._starting:  # start() tears down itself when the exit unwinds it
            self.stop()
        if "_pytest" in sys.modules and not self._starting:
            import pytest  # ends the session instead of failing only the running test
            pytest.exit(f"signal {signum}: node torn down", returncode=128 + signum)
        raise SystemExit(128 + signum)

    def _atexit(self) -> None:
        if self._owner:
            self.stop()

    def detach(self) -> None:
        """Leaves the node running when this process exits (the `up` command); a later
        start() refuses to replace it (a node whose owner died without detaching, a
        killed test session, is torn down by the next start())."""
        if self._owner:
            self._remove_handlers()
            self._owner = False
            self.state["detached"] = True
            self._save_state()

    def _orphaned(self) -> bool:
        """Started by a process that has died without detaching."""
        if self.state.get("detached", True):
            return False
        pid = self.state.get("owner_pid")
        return not pid or _start_time(pid) != self.state.get("owner_start")


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="single-node Kubernetes for tests")
    ap.add_argument("command", choices=("up", "down", "status"))
    ap.add_argument("--state-dir", default=None,
                    help=f"default $ZTUNNEL_KUBE_DIR or {DEFAULT_STATE_DIR}")
    args = ap.parse_args(argv)
    node = KubeNode(args.state_dir)
    if args.command == "up":
        try:
            node.start()
        except (KubeError, TimeoutError) as e:
            print(f"up failed: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("up interrupted; torn down", file=sys.stderr)
            return 130
        node.detach()
        print(node.kubeconfig)
        return 0
    if args.command == "down":
        node.stop()
        left = node.leftovers()
        for item in left:
            print(f"leftover: {item}", file=sys.stderr)
        return 1 if left else 0
    st = node.status()
    print(json.dumps(st, indent=1))
    return 0 if st["up"] else 3


if __name__ == "__main__":
    sys.exit(main())
