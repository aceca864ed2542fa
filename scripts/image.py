#!/usr/bin/python3
"""Builds the node's two container images as OCI archives, with no Docker engine and no
registry (`make image`): each holds the build's binaries and exactly the files they
need, found with ldd, and nothing else (no shell, no package manager).

  <hub>/ztunnel:<tag>      the node process (DaemonSet `ztunnel`): ztunnel and its
                           shared libraries.
  <hub>/ztunnel-cni:<tag>  the node agent (DaemonSet `ztunnel-cni`): the Go agent and
                           CNI plugin, ztunnel-agent (capture rules, ZDS server), the
                           iptables (nf_tables) and ip tools the rules are made with,
                           the xtables extensions they load, and a CA bundle.

Two images, as Istio ships ztunnel and install-cni: the node process does not carry
the agent's tools, and each DaemonSet rolls on its own.

    scripts/image.py --build-dir build --out-dir build/image [--tag 0.1.0] [--hub ztunnel.dev]

Writes <out-dir>/ztunnel-<tag>.tar, <out-dir>/ztunnel-cni-<tag>.tar and
<out-dir>/images.json (name, digests, archive size and unpacked size of each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oci_image  # noqa: E402

DEFAULT_HUB = "ztunnel.dev"
XTABLES_DIR = "/usr/lib/x86_64-linux-gnu/xtables"
# The extensions our rules use (ztunnel/iptables/rules.cc): matches mark, connmark,
# tcp, udp; targets CONNMARK, MARK, REDIRECT (a link to the NAT module), and the
# standard ones (RETURN, jumps to our chains). A missing one fails enrollment on the
# real node (integration/kube/test_helm.py installs the rules with this image).
XTABLES_MODULES = ["libxt_standard.so", "libxt_mark.so", "libxt_MARK.so",
                   "libxt_connmark.so", "libxt_CONNMARK.so", "libxt_tcp.so", "libxt_udp.so",
                   "libxt_NAT.so", "libxt_REDIRECT.so"]
IPTABLES_NAMES = ["iptables", "iptables-save", "iptables-restore",
                  "ip6tables", "ip6tables-save", "ip6tables-restore"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# root for the tools that need a user database; no login shell exists to name.
PASSWD = b"root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
NSSWITCH = b"hosts: files dns\n"


def shared_libraries(binary: str) -> list[str]:
    """Every shared object `binary` loads (ldd's resolved paths, the loader included).
    A static binary has none."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        return []
    if out.returncode != 0:
        raise SystemExit(f"image: ldd {binary} failed: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise SystemExit(f"image: {binary} needs a library that is missing here: {line}")
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    return libs


class Tree:
    """The files of one image: image path -> host path (a regular file) or symlink."""

    def __init__(self):
        self.files: dict[str, str | tuple] = {}
        self.symlinks: dict[str, str] = {}

    def add_binary(self, image_path: str, host_path: str, strip: bool = False) -> None:
        if not os.access(host_path, os.X_OK):
            raise SystemExit(f"image: {host_path} is missing (run `make build` first)")
        if strip:
            # The build keeps symbols for debugging and perf; the image does not need
            # them (ztunnel: 31 MB -> 4.6 MB).
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "stripped"
                subprocess.run(["strip", "--strip-all", "-o", str(out), host_path], check=True)
                self.files[image_path] = (out.read_bytes(), 0o755)
        else:
            self.files[image_path] = host_path
        self.add_libraries(host_path)

    def add_libraries(self, host_path: str) -> None:
        for lib in shared_libraries(host_path):
            # Under the path the loader asks for, as a regular file: the image needs no
            # symlink farm, and /lib64's loader path keeps working without /lib64 -> ...
            if lib not in self.files:
                self.files[lib] = os.path.realpath(lib)

    def add_data(self, image_path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[image_path] = (data, mode)

    def size(self) -> int:
        total = 0
        for src in self.files.values():
            total += len(src[0]) if isinstance(src, tuple) else os.stat(src).st_size
        return total


def node_tree(build: Path) -> Tree:
    t = Tree()
    t.add_binary("/usr/local/bin/ztunnel", str(build / "ztunnel/app/ztunnel"), strip=True)
    t.add_data("/etc/passwd", PASSWD)
    t.add_data("/etc/group", GROUP)
    return t


def cni_tree(build: Path) -> Tree:
    t = Tree()
    t.add_binary("/usr/local/bin/ztunnel-cni", str(build / "kube/ztunnel-cni"))
    t.add_binary("/usr/local/bin/ztunnel-agent", str(build / "ztunnel/agent/ztunnel-agent"),
                 strip=True)
    t.add_binary("/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-nft-multi")
    for name in IPTABLES_NAMES:
        t.symlinks[f"/usr/sbin/{name}"] = "xtables-nft-multi"
    t.add_binary("/usr/sbin/ip", "/usr/sbin/ip")
    for module in XTABLES_MODULES:
        host = f"{XTABLES_DIR}/{module}"
        if os.path.islink(host):
            t.symlinks[host] = os.readlink(host)
        else:
            t.files[host] = host
            t.add_libraries(host)
    t.files[CA_BUNDLE] = os.path.realpath(CA_BUNDLE)
    t.add_data("/etc/passwd", PASSWD)
    t.add_data("/etc/group", GROUP)
    t.add_data("/etc/nsswitch.conf", NSSWITCH)
    return t


def write(tree: Tree, out: Path, name: str, tag: str, entrypoint: list[str],
          cmd: list[str] | None, component: str) -> dict:
    info = oci_image.build(
        out, f"{name}:{tag}", files=tree.files,
        # /var/run -> ../run as on the host: the runtime's CNI_NETNS paths
        # (/var/run/netns/...) then name the host's /run/netns mounted in.
        symlinks={**tree.symlinks, "/var/run": "../run"},
        dirs={"/tmp": 0o1777, "/run/ztunnel": 0o755, "/run/netns": 0o755},
        entrypoint=entrypoint, cmd=cmd,
        labels={"org.opencontainers.image.title": component,
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.source": "https://ztunnel.dev"})
    info["unpacked_size"] = tree.size()
    info["archive"] = str(out)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build", type=Path)
    ap.add_argument("--out-dir", default=None, type=Path, help="default: <build-dir>/image")
    ap.add_argument("--tag", default=None, help="image tag (default: the project version)")
    ap.add_argument("--hub", default=DEFAULT_HUB, help="registry/prefix of the image names")
    args = ap.parse_args(argv)
    build = args.build_dir.resolve()
    out_dir = args.out_dir or build / "image"
    tag = args.tag or project_version()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise SystemExit(f"image: {tag!r} is not a valid image tag")
    images = [
        write(node_tree(build), out_dir / f"ztunnel-{tag}.tar", f"{args.hub}/ztunnel", tag,
              ["/usr/local/bin/ztunnel"], None, "ztunnel"),
        write(cni_tree(build), out_dir / f"ztunnel-cni-{tag}.tar", f"{args.hub}/ztunnel-cni",
              tag, ["/usr/local/bin/ztunnel-cni"], ["agent"], "ztunnel-cni"),
    ]
    (out_dir / "images.json").write_text(json.dumps(images, indent=1) + "\n")
    for i in images:
        print(f"image: {i['name']}  {i['unpacked_size'] / 1e6:.1f} MB unpacked, "
              f"archive {i['archive']}")
    return 0


def project_version() -> str:
    text = (Path(__file__).resolve().parent.parent / "CMakeLists.txt").read_text()
    m = re.search(r"project\(ztunnel VERSION (\S+)", text)
    if not m:
        raise SystemExit("image: no project version in CMakeLists.txt")
    return m.group(1)


if __name__ == "__main__":
    sys.exit(main())
