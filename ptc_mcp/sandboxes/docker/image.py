"""Build a sandbox image without a registry: ``docker import`` of a root filesystem made from this machine's Python.

Tests and CI cannot pull ``python:3.12-slim``, so ``build_local_image()`` packs the running interpreter (its
binary, standard library without tests and third-party packages, and the shared libraries ``ldd`` names) into a
tarball and imports it as an image. The image has no shell and no pip: only ``python3`` and a ``nobody`` user,
which is all the docker backend needs (the runtime is sent in over stdin).

Run it as ``python -m ptc_mcp.sandboxes.docker.image [tag]``; it prints the tag. It rebuilds only when the
interpreter changed (a content hash label on the image says which one it was built from).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCAL_IMAGE = "ptc-mcp-sandbox:local"
HASH_LABEL = "ptc-mcp.image-hash"
_SKIPPED_DIRS = {"site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")
_PASSWD = b"root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/tmp:/nonexistent\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def build_local_image(tag: str = LOCAL_IMAGE, *, client: Any = None, force: bool = False) -> str:
    """Import an image holding this machine's Python under ``tag`` (unless an identical one exists); returns ``tag``."""
    import docker

    client = client or docker.from_env()
    layout = _python_layout()
    digest = _layout_hash(layout)
    if not force:
        try:
            existing = client.images.get(tag)
        except docker.errors.ImageNotFound:
            pass
        else:
            if (existing.labels or {}).get(HASH_LABEL) == digest:
                return tag
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    changes = [
        f"LABEL {HASH_LABEL}={digest}",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
        "USER 65534:65534",
        "WORKDIR /tmp",
        f'CMD ["/usr/local/bin/python{version}"]',
    ]
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-image-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        with tarfile.open(tarball, "w") as archive:
            _write_rootfs(archive, layout)
        repository, separator, version_tag = tag.rpartition(":")
        if not separator or "/" in version_tag:
            repository, version_tag = tag, "latest"
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version_tag, changes=changes)
    return tag


def _python_layout() -> dict[str, Path]:
    """Image path → host file, for the interpreter, its standard library and the libraries they load."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.base_prefix)
    binary = Path(os.path.realpath(prefix / "bin" / f"python{version}"))
    stdlib = prefix / "lib" / f"python{version}"
    layout: dict[str, Path] = {f"/usr/local/bin/python{version}": binary}
    for path in _stdlib_files(stdlib):
        layout[f"/usr/local/lib/python{version}/{path.relative_to(stdlib).as_posix()}"] = path
    objects = [binary, *sorted((stdlib / "lib-dynload").glob("*.so"))]
    libraries = _shared_libraries(objects)
    libc_dir = next((str(Path(p).parent) for p in libraries if Path(p).name.startswith("libc.so")), "/usr/lib")
    for needed in libraries:
        # The interpreter's own libraries (libpython, a private OpenSSL) go where the loader looks by default.
        system = needed.startswith(("/lib", "/usr/lib"))
        target = needed if system else f"{libc_dir}/{Path(needed).name}"
        layout[target] = Path(os.path.realpath(needed))
    return layout


def _stdlib_files(stdlib: Path) -> Iterator[Path]:
    cache_tag = sys.implementation.cache_tag
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("config-"))
        for name in sorted(files):
            if name.endswith(".pyc") and not name.endswith(f".{cache_tag}.pyc"):
                continue  # optimized bytecode (-O/-OO) is never used by the sandbox
            yield Path(root) / name


def _shared_libraries(objects: list[Path]) -> list[str]:
    found: set[str] = set()
    for batch_start in range(0, len(objects), 64):
        batch = [str(p) for p in objects[batch_start : batch_start + 64]]
        listing = subprocess.run(["ldd", *batch], capture_output=True, text=True, check=False).stdout
        for line in listing.splitlines():
            match = _LDD_PATH.search(line)
            if match and "not found" not in line:
                found.add(match.group(1))
    return sorted(found)


def _layout_hash(layout: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for target, source in sorted(layout.items()):
        stat = source.stat()
        digest.update(f"{target}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _write_rootfs(archive: tarfile.TarFile, layout: dict[str, Path]) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    directories = {"/tmp", "/etc", "/usr/local/bin", "/proc", "/sys", "/dev"}
    for target in layout:
        parent = Path(target).parent
        while str(parent) != "/":
            directories.add(str(parent))
            parent = parent.parent
    for directory in sorted(directories):
        info = tarfile.TarInfo(directory.lstrip("/"))
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777 if directory == "/tmp" else 0o755
        archive.addfile(info)
    for target, source in sorted(layout.items()):
        info = archive.gettarinfo(str(source), arcname=target.lstrip("/"))
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755 if os.access(source, os.X_OK) else 0o644
        with source.open("rb") as handle:
            archive.addfile(info, handle)
    for name, data in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        archive.addfile(info, io.BytesIO(data))
    for link in ("python3", "python"):
        info = tarfile.TarInfo(f"usr/local/bin/{link}")
        info.type, info.linkname = tarfile.SYMTYPE, f"python{version}"
        archive.addfile(info)


if __name__ == "__main__":
    sys.stdout.write(build_local_image(*sys.argv[1:2]) + "\n")
