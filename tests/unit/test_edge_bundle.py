"""Edge bundles: the same inputs give the same bytes, and the manifest catches any changed file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mlopsfile.drivers.edge_bundle import BUNDLE_MANIFEST, server_files, verify_bundle, write_bundle


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    edge_dir, wheels = tmp_path / "edge", tmp_path / "wheels"
    edge_dir.mkdir()
    wheels.mkdir()
    (edge_dir / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
    (edge_dir / "manifest.json").write_text('{"format": "mlopsfile-edge/v1"}\n')
    (wheels / "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"wheel")
    return edge_dir, wheels


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    edge_dir, wheels = inputs
    first, second = tmp_path / "a" / "b.tar.gz", tmp_path / "b" / "b.tar.gz"
    write_bundle(edge_dir, wheels, first, {"io.mlopsfile.model-version": "3"})
    (edge_dir / "model.onnx").touch()  # a newer modification time changes nothing
    write_bundle(edge_dir, wheels, second, {"io.mlopsfile.model-version": "3"})
    assert first.read_bytes() == second.read_bytes()
    names = set(members(first))
    assert {"model/model.onnx", "model/manifest.json", "Dockerfile", BUNDLE_MANIFEST,
            "wheels/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl"} <= names
    assert set(server_files()) <= names
    assert verify_bundle(first) == []


def test_another_model_gives_other_bytes(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    edge_dir, wheels = inputs
    write_bundle(edge_dir, wheels, tmp_path / "one.tar.gz", {})
    (edge_dir / "model.onnx").write_bytes(b"other")
    write_bundle(edge_dir, wheels, tmp_path / "two.tar.gz", {})
    assert (tmp_path / "one.tar.gz").read_bytes() != (tmp_path / "two.tar.gz").read_bytes()


def test_a_changed_missing_or_extra_file_fails_verification(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    edge_dir, wheels = inputs
    bundle = tmp_path / "b.tar.gz"
    write_bundle(edge_dir, wheels, bundle, {})
    contents = members(bundle)
    contents["model/model.onnx"] = b"tampered"
    del contents["Dockerfile"]
    contents["extra.txt"] = b"?"
    tampered = tmp_path / "t.tar.gz"
    with tarfile.open(tampered, "w:gz") as archive:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert verify_bundle(tampered) == ["Dockerfile: missing", "extra.txt: not in the manifest",
                                       "model/model.onnx: sha256 differs from the manifest"]
    manifest = json.loads(contents[BUNDLE_MANIFEST])
    assert set(manifest["files"]) == set(members(bundle)) - {BUNDLE_MANIFEST}


def test_something_that_is_not_a_bundle_fails_verification(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    assert verify_bundle(junk)[0].startswith("not a readable bundle")
