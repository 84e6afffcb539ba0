"""What goes into an edge image or bundle, and the bundle tarball itself.

The same file set feeds both: the Dockerfile's build context and the tarball for devices
without Docker. The tarball is reproducible (sorted entries, zero times and owners, fixed
modes, gzip without a timestamp), so the same inputs give the same bytes, and it carries
``bundle-manifest.json`` with the sha256 of every other file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from mlopsfile.drivers.runtime_package import runtime_source
from mlopsfile.errors import DriverError

BUNDLE_MANIFEST = "bundle-manifest.json"
SERVER_FILES = ("__init__.py", "scoring.py")  # runtime/ files the edge server imports besides runtime/edge/


def context_files(edge_dir: Path, wheels: Path | None) -> dict[str, Path]:
    """Archive name -> local file, in the layout runtime/edge/Dockerfile expects."""
    files = server_files()
    for name in ("model.onnx", "manifest.json"):
        files[f"model/{name}"] = edge_dir / name
    if wheels is not None:
        for path in sorted(wheels.glob("*.whl")):
            files[f"wheels/{path.name}"] = path
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise DriverError(f"edge build input missing: {', '.join(missing)}")
    return files


def edge_server_digest() -> str:
    """Digest of the server code that goes into images: a changed server means new images."""
    digest = hashlib.sha256()
    for name, path in sorted(server_files().items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def server_files() -> dict[str, Path]:
    """The Dockerfile and the server code, by their names in the build context."""
    source = runtime_source()
    files = {"Dockerfile": source / "edge" / "Dockerfile"}
    files.update({f"app/runtime/{name}": source / name for name in SERVER_FILES})
    files.update({f"app/runtime/edge/{p.name}": p for p in sorted((source / "edge").glob("*.py"))})
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))


def write_tar(files: dict[str, Path], destination: Path, extra: dict[str, bytes] | None = None,
              compress: bool = True) -> None:
    """Write ``files`` (and ``extra`` in-memory files) as a reproducible tarball, atomically."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    entries = {name: path.read_bytes() for name, path in files.items()}
    entries.update(extra or {})
    with partial.open("wb") as raw:
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compress else raw
        with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name in sorted(entries):
                _add(archive, name, entries[name])
        if compress:
            stream.close()
    partial.replace(destination)


def write_bundle(edge_dir: Path, wheels: Path, destination: Path, image_labels: dict[str, str]) -> None:
    files = context_files(edge_dir, wheels)
    manifest = {"files": {name: file_sha256(path) for name, path in sorted(files.items())},
                "labels": dict(sorted(image_labels.items())),
                "run": "PYTHONPATH=site:app python3 -m runtime.edge.server --model-dir model "
                       "(after: pip install --no-index --find-links wheels --target site onnxruntime numpy)"}
    write_tar(files, destination, {BUNDLE_MANIFEST: (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()})


def verify_bundle(path: Path) -> list[str]:
    """Problems found in a bundle: files missing, extra or with another digest; empty when it verifies."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            contents = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
    except (OSError, tarfile.TarError) as exc:
        return [f"not a readable bundle: {exc}"]
    if BUNDLE_MANIFEST not in contents:
        return [f"no {BUNDLE_MANIFEST}"]
    listed: dict[str, str] = json.loads(contents.pop(BUNDLE_MANIFEST))["files"]
    problems = [f"{name}: missing" for name in sorted(set(listed) - set(contents))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(contents) - set(listed))]
    problems += [f"{name}: sha256 differs from the manifest" for name in sorted(set(listed) & set(contents))
                 if hashlib.sha256(contents[name]).hexdigest() != listed[name]]
    return problems
