"""Wheels for edge images: cache keys, platform tags, the pip command, caching and failures.

pip itself is replaced at the subprocess boundary; the real download runs in
tests/integration/test_docker_engine.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlopsfile.drivers import edge_wheels
from mlopsfile.drivers.edge_wheels import (
    DEFAULT_PLATFORM,
    MARKER,
    default_edge_requirements,
    image_wheels,
    platform_tags,
    wheels_key,
)
from mlopsfile.errors import DriverError

PINS = ["onnxruntime==1.32.0", "numpy==1.26.4"]


class FakePip:
    """Stands in for ``subprocess.run``: records commands and writes wheels into ``-d``."""

    def __init__(self, returncode: int = 0, stderr: str = "", wheels: tuple[str, ...] = ("a-1-py3-none-any.whl",),
                 raises: BaseException | None = None) -> None:
        self.returncode, self.stderr, self.wheels, self.raises = returncode, stderr, wheels, raises
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        assert options["capture_output"] and options["text"] and options["timeout"] > 0
        if self.raises is not None:
            raise self.raises
        destination = Path(command[command.index("-d") + 1])
        if self.returncode == 0:
            for name in self.wheels:
                (destination / name).write_bytes(b"wheel")
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def pip(monkeypatch: pytest.MonkeyPatch) -> FakePip:
    fake = FakePip()
    monkeypatch.setattr(edge_wheels.subprocess, "run", fake)
    return fake


def test_key_is_stable_and_ignores_requirement_order() -> None:
    key = wheels_key(PINS, "3.11", "manylinux_2_28_x86_64")
    assert key == "ec4dcebb50e04c2131ac602f619d5d99988b66badc65e7a2d1978fae0c98d45c"
    assert wheels_key(list(reversed(PINS)), "3.11", "manylinux_2_28_x86_64") == key
    assert wheels_key(PINS, "3.11", ["manylinux_2_28_x86_64"]) == key


@pytest.mark.parametrize("change", [
    {"requirements": ["onnxruntime==1.31.0", "numpy==1.26.4"]},
    {"python_version": "3.12"},
    {"platform": "manylinux_2_27_x86_64"},
    {"platform": "manylinux_2_28_aarch64"},
])
def test_key_changes_with_every_argument(change: dict[str, Any]) -> None:
    arguments = {"requirements": PINS, "python_version": "3.11", "platform": "manylinux_2_28_x86_64"}
    assert wheels_key(**(arguments | change)) != wheels_key(**arguments)


def test_manylinux_platforms_expand_to_every_older_manylinux_tag() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    # onnxruntime ships manylinux_2_27/2_28 wheels only; numpy 1.26 manylinux2014 ones.
    assert {"manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64",
            "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags
    assert all(tag.endswith("_x86_64") for tag in tags)
    assert platform_tags("manylinux2014_x86_64")[:2] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert "manylinux_2_28_x86_64" in platform_tags(DEFAULT_PLATFORM)


def test_several_platforms_merge_in_order_and_other_tags_pass_through() -> None:
    assert platform_tags(["win_amd64", "macosx_11_0_arm64"]) == ["win_amd64", "macosx_11_0_arm64"]
    merged = platform_tags(["manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"])
    assert merged == [*platform_tags("manylinux_2_17_x86_64"), "linux_x86_64"]
    assert len(merged) == len(set(merged))


def test_command_downloads_binary_wheels_for_the_image_python(pip: FakePip, tmp_path: Path) -> None:
    directory = image_wheels(tmp_path, PINS, "3.11", "manylinux_2_28_x86_64")

    assert directory == tmp_path / "wheels" / wheels_key(PINS, "3.11", "manylinux_2_28_x86_64")
    [command] = pip.commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--only-binary=:all:" in command
    platforms = [command[i + 1] for i, part in enumerate(command) if part == "--platform"]
    assert platforms == platform_tags("manylinux_2_28_x86_64")
    tail = command[command.index("--python-version"):]
    assert tail[:8] == ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "-d",
                        tail[7]]
    assert Path(tail[7]).parent == tmp_path / "wheels"  # a temporary directory next to the final one
    assert tail[8:] == PINS
    assert sorted(p.name for p in directory.iterdir()) == sorted([MARKER, "a-1-py3-none-any.whl"])
    assert json.loads((directory / MARKER).read_text())["wheels"] == ["a-1-py3-none-any.whl"]
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == [directory.name]  # no temporary left


def test_abi_follows_the_python_version(pip: FakePip, tmp_path: Path) -> None:
    image_wheels(tmp_path, PINS, "3.12")
    command = pip.commands[0]
    assert command[command.index("--abi") + 1] == "cp312"
    assert command[command.index("--python-version") + 1] == "3.12"


def test_a_complete_download_is_reused(pip: FakePip, tmp_path: Path) -> None:
    first = image_wheels(tmp_path, PINS)
    assert image_wheels(tmp_path, list(reversed(PINS))) == first
    assert len(pip.commands) == 1


def test_an_incomplete_directory_is_downloaded_again(pip: FakePip, tmp_path: Path) -> None:
    partial = tmp_path / "wheels" / wheels_key(PINS)
    partial.mkdir(parents=True)
    (partial / "half.whl").write_bytes(b"")
    assert image_wheels(tmp_path, PINS) == partial
    assert len(pip.commands) == 1
    assert (partial / MARKER).is_file() and not (partial / "half.whl").exists()


def test_pip_failure_is_a_one_line_driver_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stderr = ("WARNING: something harmless\n"
              "ERROR: Could not find a version that satisfies the requirement onnxruntime==0.1 "
              "(from versions: 1.15.0, 1.16.0)\n"
              "ERROR: No matching distribution found for onnxruntime==0.1\n")
    monkeypatch.setattr(edge_wheels.subprocess, "run", FakePip(returncode=1, stderr=stderr))
    with pytest.raises(DriverError) as caught:
        image_wheels(tmp_path, ["onnxruntime==0.1"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("failed: Could not find a version that satisfies the requirement onnxruntime==0.1")
    assert not caught.value.temporary
    assert list((tmp_path / "wheels").iterdir()) == []


def test_network_failures_are_temporary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stderr = ("WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...)'\n"
              "ERROR: Could not find a version that satisfies the requirement numpy==1.26.4\n")
    monkeypatch.setattr(edge_wheels.subprocess, "run", FakePip(returncode=1, stderr=stderr))
    with pytest.raises(DriverError) as caught:
        image_wheels(tmp_path, PINS)
    assert caught.value.temporary

    monkeypatch.setattr(edge_wheels.subprocess, "run", FakePip(raises=subprocess.TimeoutExpired(["pip"], 1)))
    with pytest.raises(DriverError, match="took more than") as caught:
        image_wheels(tmp_path, PINS)
    assert caught.value.temporary


def test_no_wheels_or_no_requirements_or_a_bad_python_are_errors(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(edge_wheels.subprocess, "run", FakePip(wheels=()))
    with pytest.raises(DriverError, match="no wheels"):
        image_wheels(tmp_path, PINS)
    with pytest.raises(DriverError, match="no requirements"):
        image_wheels(tmp_path, [])
    with pytest.raises(DriverError, match="invalid Python version"):
        image_wheels(tmp_path, PINS, "3")


def test_default_requirements_pin_the_installed_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_wheels.importlib.metadata, "version", {"onnxruntime": "1.2.3", "numpy": "1.26.4"}.get)
    assert default_edge_requirements() == ["onnxruntime==1.2.3", "numpy==1.26.4"]

    def missing(name: str) -> str:
        raise edge_wheels.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(edge_wheels.importlib.metadata, "version", missing)
    with pytest.raises(DriverError, match=r"onnxruntime is not installed.*mlopsfile\[edge\]"):
        default_edge_requirements()
