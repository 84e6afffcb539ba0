"""The runtime/ package as shipped to Ray: its digest, and a staged copy Ray runs in place or uploads."""

from __future__ import annotations

import hashlib
import shutil
from functools import lru_cache
from pathlib import Path

import runtime
from mlopsfile.config import Settings

SHIPPED_SUFFIXES = (".py", ".txt", ".json")


def runtime_source() -> Path:
    return Path(runtime.__file__).resolve().parent


def _shipped_files(source: Path) -> list[Path]:
    # runtime/edge/ runs in edge images, never on Ray: a change there must not replace replicas.
    return sorted(
        p for p in source.rglob("*")
        if p.is_file() and p.suffix in SHIPPED_SUFFIXES and "__pycache__" not in p.parts
        and p.relative_to(source).parts[0] != "edge"
    )


@lru_cache(maxsize=1)
def runtime_digest() -> str:
    """Digest of the data-plane code: a new runtime means new replicas."""
    source = runtime_source()
    digest = hashlib.sha256()
    for path in _shipped_files(source):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_runtime(state_dir: Path) -> Path:
    """A directory holding only ``runtime/``, to hand Ray as a working_dir."""
    staged = state_dir / "runtime" / runtime_digest()
    target = staged / "runtime"
    if not target.is_dir():
        source = runtime_source()
        temporary = staged.with_name(staged.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        for path in _shipped_files(source):
            destination = temporary / "runtime" / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        shutil.rmtree(staged, ignore_errors=True)
        temporary.rename(staged)
    return staged


def runtime_working_dir(settings: Settings) -> str:
    """The ``working_dir`` a job or Serve application of this project runs in.

    For the head mlopsfile runs on this machine (``settings.manages_local_ray``) it is the staged ``runtime/`` itself, as a
    ``local://`` URI: Ray then neither zips and uploads it nor unpacks it again for the first job,
    and the staged copy never changes once written (its name is its digest). For any other cluster
    it is the directory's path, which Ray zips and uploads to the cluster.
    """
    staged = stage_runtime(settings.state_dir).resolve()
    return f"local://{staged}" if settings.manages_local_ray else str(staged)
