#!/usr/bin/python3
"""Writes an OCI image archive (an OCI image layout in a tar) from a set of files, with
no registry, no daemon and no compression: one uncompressed tar layer, an image config
(rootfs.diff_ids, entrypoint/cmd/env), a manifest, `index.json` and `oci-layout`.
`ctr -n k8s.io images import <archive>` (containerd 1.6) imports and unpacks it; the
image name comes from the `io.containerd.image.name` annotation of the index entry.

The output is deterministic: fixed mtimes, uid/gid 0, sorted entries, parent
directories created implicitly, so equal inputs give byte-equal archives (and equal
image digests).

    from oci_image import build
    build("busybox.tar", "ztunnel-test/busybox:1",
          files={"/bin/busybox": "/bin/busybox", "/etc/passwd": (b"root:x:0:0::/:/bin/sh\\n", 0o644)},
          symlinks={"/bin/sh": "busybox"}, cmd=["sh"])

CLI:
    oci_image.py --out img.tar --name ztunnel/ztunnel:dev \\
        --file /usr/local/bin/ztunnel=build/ztunnel/app/ztunnel \\
        --symlink /bin/sh=busybox --dir /tmp=1777 \\
        --entrypoint /usr/local/bin/ztunnel --cmd --inpod --env RUST_LOG=info
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path, PurePosixPath

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalize_ref(ref: str) -> str:
    """Docker-style normalization, what the CRI does with a pod's `image:`:
    "busybox:1" -> "docker.io/library/busybox:1", "a/b:1" -> "docker.io/a/b:1",
    "registry.local:5000/a:1" unchanged. A reference without tag or digest gets ":latest"."""
    name, sep, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = "docker.io/library/" + name
    elif not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + name
    elif first == "docker.io" and "/" not in rest:
        name = "docker.io/library/" + rest
    last = name.rsplit("/", 1)[-1]
    if not sep and ":" not in last:
        name += ":latest"
    return name + (sep + digest if sep else "")


def _ref_tag(ref: str) -> str:
    """The tag of a normalized reference (what containerd writes as ref.name on export)."""
    last = ref.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _clean(path: str) -> str:
    p = PurePosixPath("/" + str(path).lstrip("/"))
    parts = [x for x in p.parts[1:] if x not in ("", ".")]
    if ".." in parts or not parts:
        raise ValueError(f"bad image path {path!r}")
    return "/".join(parts)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tarinfo(name: str, kind: bytes, mode: int, mtime: int, size: int = 0,
             linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode & 0o7777
    ti.mtime = mtime
    ti.size = size
    ti.linkname = linkname
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def build_layer(files: dict | None = None, symlinks: dict | None = None,
                dirs: dict | None = None, mtime: int = 0) -> bytes:
    """One uncompressed layer tar. files: image path -> host path (mode taken from the
    host file) or (bytes, mode); symlinks: image path -> target; dirs: image path ->
    mode (parents of every entry are created with 0755 unless listed)."""
    entries: dict[str, tuple] = {}
    explicit_dirs = {_clean(p): m for p, m in (dirs or {}).items()}
    for path, src in (files or {}).items():
        if isinstance(src, tuple):
            data, mode = src
            data = data.encode() if isinstance(data, str) else bytes(data)
        else:
            st = os.stat(src)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{src} is not a regular file")
            data, mode = Path(src).read_bytes(), stat.S_IMODE(st.st_mode)
        entries[_clean(path)] = ("file", data, mode)
    for path, target in (symlinks or {}).items():
        entries[_clean(path)] = ("symlink", str(target), 0o777)
    for path, mode in explicit_dirs.items():
        if path in entries:
            raise ValueError(f"{path} is both a directory and a file/symlink")
        entries[path] = ("dir", None, mode)
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            kind = entries.get(parent, ("dir",))[0]
            if kind != "dir":
                raise ValueError(f"{parent} is a parent of {path} but not a directory")
            entries.setdefault(parent, ("dir", None, 0o755))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries, key=lambda p: p.split("/")):
            kind, data, mode = entries[path]
            if kind == "dir":
                tar.addfile(_tarinfo(path + "/", tarfile.DIRTYPE, mode, mtime))
            elif kind == "symlink":
                tar.addfile(_tarinfo(path, tarfile.SYMTYPE, mode, mtime, linkname=data))
            else:
                tar.addfile(_tarinfo(path, tarfile.REGTYPE, mode, mtime, len(data)),
                            io.BytesIO(data))
    return buf.getvalue()


def build(out_path: str | os.PathLike, name_tag: str, files: dict | None = None,
          entrypoint: list[str] | None = None, cmd: list[str] | None = None,
          env: list[str] | dict | None = None, symlinks: dict | None = None,
          dirs: dict | None = None, workdir: str = "/", user: str = "",
          labels: dict | None = None, exposed_ports: list[str] | None = None,
          architecture: str = "amd64", os_name: str = "linux", mtime: int = 0,
          normalize: bool = True) -> dict:
    """Writes the archive to out_path (atomically) and returns its identity:
    {"name", "manifest_digest", "config_digest" (the image id), "layer_digest", "size"}.
    name_tag is normalized like the CRI does ("a/b:1" -> "docker.io/a/b:1") unless
    normalize=False, so the imported image matches a pod's `image: a/b:1`.
    env: ["K=V", ...] or {"K": "V"}; PATH gets a default unless given."""
    name = normalize_ref(name_tag) if normalize else name_tag
    layer = build_layer(files, symlinks, dirs, mtime)
    layer_digest = _digest(layer)
    env_list = [f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else list(env or [])
    if not any(e.startswith("PATH=") for e in env_list):
        env_list.insert(0, DEFAULT_PATH_ENV)
    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    container_config: dict = {"Env": env_list, "WorkingDir": workdir}
    if entrypoint:
        container_config["Entrypoint"] = list(entrypoint)
    if cmd:
        container_config["Cmd"] = list(cmd)
    if user:
        container_config["User"] = user
    if labels:
        container_config["Labels"] = dict(sorted(labels.items()))
    if exposed_ports:
        container_config["ExposedPorts"] = {p: {} for p in sorted(exposed_ports)}
    config = {
        "created": created,
        "architecture": architecture,
        "os": os_name,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "scripts/oci_image.py"}],
    }
    config_bytes = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = _json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": _digest(manifest_bytes),
            "size": len(manifest_bytes),
            "platform": {"architecture": architecture, "os": os_name},
            "annotations": {ANNOTATION_CONTAINERD_NAME: name,
                            ANNOTATION_REF_NAME: _ref_tag(name)},
        }],
    }
    blobs = {d: b for d, b in ((layer_digest, layer), (_digest(config_bytes), config_bytes),
                               (_digest(manifest_bytes), manifest_bytes))}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            def add(path: str, data: bytes | None, kind=tarfile.REGTYPE, mode=0o644):
                ti = _tarinfo(path, kind, mode, mtime, len(data or b""))
                tar.addfile(ti, io.BytesIO(data) if data is not None else None)
            add("blobs/", None, tarfile.DIRTYPE, 0o755)
            add("blobs/sha256/", None, tarfile.DIRTYPE, 0o755)
            for d in sorted(blobs):
                add("blobs/sha256/" + d.split(":", 1)[1], blobs[d])
            add("index.json", _json(index))
            add("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"name": name, "manifest_digest": _digest(manifest_bytes),
            "config_digest": _digest(config_bytes), "layer_digest": layer_digest,
            "size": out.stat().st_size}


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _kv(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{what} wants A=B, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="archive to write")
    ap.add_argument("--name", required=True, help="image name:tag (normalized like the CRI)")
    ap.add_argument("--file", action="append", default=[], metavar="IMAGE_PATH=HOST_PATH[:MODE]",
                    help="a host file at IMAGE_PATH (mode from the host file unless :MODE, octal)")
    ap.add_argument("--symlink", action="append", default=[], metavar="IMAGE_PATH=TARGET")
    ap.add_argument("--dir", action="append", default=[], metavar="IMAGE_PATH[=MODE]")
    ap.add_argument("--entrypoint", nargs="+", default=None)
    ap.add_argument("--cmd", nargs="+", default=None)
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    ap.add_argument("--label", action="append", default=[], metavar="K=V")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--user", default="")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--no-normalize", action="store_true", help="use --name as given")
    args = ap.parse_args(argv)
    files: dict = {}
    for spec in args.file:
        path, host = _kv(spec, "--file")
        mode = None
        if ":" in host and host.rsplit(":", 1)[1].isdigit():
            host, mode_s = host.rsplit(":", 1)
            mode = int(mode_s, 8)
        files[path] = (Path(host).read_bytes(), mode) if mode is not None else host
    symlinks = dict(_kv(s, "--symlink") for s in args.symlink)
    dirs = {}
    for spec in args.dir:
        path, _, mode = spec.partition("=")
        dirs[path] = int(mode, 8) if mode else 0o755
    for e in args.env:
        _kv(e, "--env")
    info = build(args.out, args.name, files, entrypoint=args.entrypoint, cmd=args.cmd,
                 env=args.env, symlinks=symlinks, dirs=dirs, workdir=args.workdir,
                 user=args.user, labels=dict(_kv(x, "--label") for x in args.label),
                 architecture=args.arch, normalize=not args.no_normalize)
    json.dump(info, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
