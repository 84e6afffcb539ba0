"""Wheels for edge images, downloaded on the host for the image's Python and platform.

Edge images are built with no network, so every Python package they need is downloaded
here first (``pip download`` for the target interpreter, not the host's) and copied into
the build context. Downloads are cached per set of arguments under
``<cache_dir>/wheels/<key>``, appear there only when complete (download into a temporary
directory, then an atomic rename) and are reused from then on.

pip matches a wheel's platform tag only against the exact ``--platform`` values it is
given: ``manylinux2014_x86_64`` alone does not find onnxruntime, whose Linux wheels are
``manylinux_2_27``/``manylinux_2_28`` only. So a manylinux platform is expanded into every
older manylinux tag that runs on it, the way an installer on that system would accept them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlopsfile.errors import DriverError

# glibc 2.36: Debian bookworm, the default base image (mlopsfile-edge-base:bookworm, python:3.11-slim).
DEFAULT_PLATFORM = "manylinux_2_36_x86_64"
EDGE_PACKAGES = ("onnxruntime", "numpy")
MARKER = "mlopsfile-wheels.json"
DOWNLOAD_TIMEOUT_S = 900
_LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
_LEGACY_BY_GLIBC = {minor: name for name, minor in _LEGACY_MANYLINUX.items()}
_PYTHON_RE = re.compile(r"^(\d)\.(\d{1,2})$")
_NETWORK_HINTS = re.compile(
    r"connection|timed out|timeout|temporary failure|name resolution|network is unreachable|"
    r"max retries|proxyerror|sslerror|http error 5\d\d|\b5\d\d server error",
    re.IGNORECASE,
)


def default_edge_requirements() -> list[str]:
    """The packages the edge server needs, pinned to the versions installed here.

    Conversion and parity run with these versions on the host, so the image runs the same.
    """
    pins = []
    for package in EDGE_PACKAGES:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError as exc:
            raise DriverError(f"{package} is not installed: install mlopsfile[edge] to build edge images") from exc
    return pins


def platform_tags(platform: str | Sequence[str]) -> list[str]:
    """Every platform tag a wheel may carry to run on ``platform`` (one tag or several), in order.

    ``manylinux_2_X_<arch>`` and the legacy ``manylinux2014/2010/1_<arch>`` aliases expand to
    all manylinux tags of glibc 2.X and older; any other tag is taken as it is.
    """
    given = [platform] if isinstance(platform, str) else list(platform)
    tags: list[str] = []
    for tag in given:
        for compatible in _compatible_tags(tag):
            if compatible not in tags:
                tags.append(compatible)
    return tags


def _compatible_tags(tag: str) -> list[str]:
    modern = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
    legacy = re.fullmatch(r"(manylinux2014|manylinux2010|manylinux1)_(\w+)", tag)
    if modern:
        glibc_minor, arch = int(modern.group(1)), modern.group(2)
    elif legacy:
        glibc_minor, arch = _LEGACY_MANYLINUX[legacy.group(1)], legacy.group(2)
    else:
        return [tag]
    tags = []
    for minor in range(glibc_minor, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in _LEGACY_BY_GLIBC:
            tags.append(f"{_LEGACY_BY_GLIBC[minor]}_{arch}")
    return tags


def _abi(python_version: str) -> str:
    match = _PYTHON_RE.match(python_version)
    if not match:
        raise DriverError(f"invalid Python version {python_version!r} for edge wheels: expected e.g. '3.11'")
    return f"cp{match.group(1)}{match.group(2)}"


def wheels_key(requirements: Sequence[str], python_version: str = "3.11",
               platform: str | Sequence[str] = DEFAULT_PLATFORM) -> str:
    """sha256 of what decides the download: the requirements (in any order), Python and platforms."""
    identity = {"requirements": sorted(requirements), "python_version": python_version,
                "implementation": "cp", "abi": _abi(python_version), "platforms": platform_tags(platform)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def pip_download_command(requirements: Sequence[str], destination: Path, python_version: str = "3.11",
                         platform: str | Sequence[str] = DEFAULT_PLATFORM) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off", "--only-binary=:all:"]
    for tag in platform_tags(platform):
        command += ["--platform", tag]
    command += ["--python-version", python_version, "--implementation", "cp", "--abi", _abi(python_version),
                "-d", str(destination), *requirements]
    return command


def image_wheels(cache_dir: Path, requirements: list[str], python_version: str = "3.11",
                 platform: str | Sequence[str] = DEFAULT_PLATFORM) -> Path:
    """A directory holding wheels of ``requirements`` and their dependencies for the image's Python.

    Downloaded once per (requirements, Python version, platforms); raises ``DriverError``
    with a one-line reason when pip cannot get them.
    """
    if not requirements:
        raise DriverError("no requirements to download wheels for")
    key = wheels_key(requirements, python_version, platform)
    root = Path(cache_dir) / "wheels"
    final = root / key
    if _complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        _download(requirements, staging, python_version, platform)
        wheels = sorted(p.name for p in staging.glob("*.whl"))
        if not wheels:
            raise DriverError(f"pip downloaded no wheels for {', '.join(requirements)}")
        (staging / MARKER).write_text(json.dumps(
            {"requirements": sorted(requirements), "python_version": python_version,
             "platforms": platform_tags(platform), "wheels": wheels}, indent=2, sort_keys=True) + "\n")
        if final.exists() and not _complete(final):
            shutil.rmtree(final, ignore_errors=True)  # a partial directory left by hand or an old version
        try:
            os.rename(staging, final)
        except OSError as exc:
            if not _complete(final):  # else someone else finished first: theirs is as good as ours
                raise DriverError(f"cannot store wheels in {final}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _complete(directory: Path) -> bool:
    try:
        listed = json.loads((directory / MARKER).read_text())["wheels"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(listed) and all((directory / name).is_file() for name in listed)


def _download(requirements: Sequence[str], destination: Path, python_version: str,
              platform: str | Sequence[str]) -> None:
    command = pip_download_command(requirements, destination, python_version, platform)
    what = f"wheels of {', '.join(requirements)} for Python {python_version}"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DriverError(f"downloading {what} took more than {DOWNLOAD_TIMEOUT_S} s", temporary=True) from exc
    except OSError as exc:
        raise DriverError(f"downloading {what} failed: cannot run pip: {exc}") from exc
    if result.returncode != 0:
        output = f"{result.stderr or ''}\n{result.stdout or ''}"
        raise DriverError(f"downloading {what} failed: {_reason(output, result.returncode)}",
                          temporary=bool(_NETWORK_HINTS.search(output)))


def _reason(output: str, returncode: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    if errors:
        return re.sub(r"\s*\(from versions: [^)]*\)", "", errors[0])
    return lines[-1] if lines else f"pip exited with code {returncode}"
