"""runtime.batch_files on a local directory: what a batch plan lists and a run reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.batch_files import FileFacts, InputError, facts_of, list_inputs, resolve_format


def touch(path: Path, size: int = 4, mtime_ns: int = 1_700_000_000_000_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def paths(listed: list[FileFacts], root: Path) -> list[str]:
    return [os.path.relpath(f.path, root) for f in listed]


def test_a_glob_lists_files_sorted_with_sizes_and_mtimes(tmp_path: Path) -> None:
    touch(tmp_path / "c.parquet", 30, 3_000)
    touch(tmp_path / "a.parquet", 10, 1_000)
    touch(tmp_path / "b.parquet", 20, 2_000)
    touch(tmp_path / "notes.txt", 5)
    listed = list_inputs([str(tmp_path / "*.parquet")], "auto")
    assert listed == [
        FileFacts(str(tmp_path / "a.parquet"), 10, 1_000),
        FileFacts(str(tmp_path / "b.parquet"), 20, 2_000),
        FileFacts(str(tmp_path / "c.parquet"), 30, 3_000),
    ]


def test_several_patterns_are_merged_sorted_and_without_duplicates(tmp_path: Path) -> None:
    touch(tmp_path / "b.csv")
    touch(tmp_path / "a.csv")
    listed = list_inputs([str(tmp_path / "b.csv"), str(tmp_path / "*.csv")], "auto")
    assert paths(listed, tmp_path) == ["a.csv", "b.csv"]


def test_a_single_file_and_a_file_uri(tmp_path: Path) -> None:
    path = touch(tmp_path / "one.csv", 7, 5_000)
    assert list_inputs([str(path)], "auto") == [FileFacts(str(path), 7, 5_000)]
    assert list_inputs([f"file://{path}"], "auto") == [FileFacts(str(path), 7, 5_000)]
    assert facts_of(str(path)) == FileFacts(str(path), 7, 5_000)


@pytest.mark.parametrize("pattern", ["*.parquet", "missing.csv", "nowhere/*.csv"])
def test_a_pattern_matching_nothing_is_an_error_naming_it(tmp_path: Path, pattern: str) -> None:
    touch(tmp_path / "a.csv")
    full = str(tmp_path / pattern)
    with pytest.raises(InputError) as caught:
        list_inputs([str(tmp_path / "a.csv"), full], "auto")
    assert str(caught.value) == f"no input file matches {full!r}"


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no input file matches"):
        list_inputs([str(tmp_path / "empty")], "auto")


def test_a_directory_lists_only_data_files_recursively(tmp_path: Path) -> None:
    for name in ("a.parquet", "sub/b.parquet", "sub/deeper/c.pq", "d.PARQUET", "_SUCCESS", "_metadata.parquet",
                 ".a.parquet.crc", ".hidden.parquet", "README.md", "part-00000"):
        touch(tmp_path / "data" / name)
    listed = list_inputs([str(tmp_path / "data")], "auto")
    assert paths(listed, tmp_path / "data") == ["a.parquet", "d.PARQUET", "sub/b.parquet", "sub/deeper/c.pq"]
    # A trailing slash names the same directory.
    assert list_inputs([str(tmp_path / "data") + "/"], "auto") == listed


def test_a_directory_of_csv_files(tmp_path: Path) -> None:
    for name in ("x.csv", "y.csv", "_tmp.csv", ".x.csv.swp"):
        touch(tmp_path / name)
    assert paths(list_inputs([str(tmp_path)], "auto"), tmp_path) == ["x.csv", "y.csv"]


def test_a_directory_skips_files_under_underscore_directories(tmp_path: Path) -> None:
    touch(tmp_path / "a.parquet")
    touch(tmp_path / "_temporary" / "0" / "part-0.parquet")
    touch(tmp_path / ".staging" / "part-1.parquet")
    assert paths(list_inputs([str(tmp_path)], "auto"), tmp_path) == ["a.parquet"]


def test_mixed_parquet_and_csv_with_format_auto_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "a.parquet")
    touch(tmp_path / "b.csv")
    with pytest.raises(InputError) as caught:
        list_inputs([str(tmp_path)], "auto")
    assert str(caught.value) == "the input mixes parquet and csv files; list one format per deployment"
    with pytest.raises(InputError, match="mixes parquet and csv"):
        list_inputs([str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")], "auto")


def test_an_unknown_extension_with_format_auto_is_an_error(tmp_path: Path) -> None:
    path = touch(tmp_path / "scores.dat")
    with pytest.raises(InputError) as caught:
        list_inputs([str(path)], "auto")
    assert str(caught.value) == (f"cannot tell the format of {str(path)!r} from its extension; "
                                 "set format: parquet or csv")


def test_an_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    touch(tmp_path / "scores.dat")
    touch(tmp_path / "more.txt")
    listed = list_inputs([str(tmp_path / "*")], "csv")
    assert paths(listed, tmp_path) == ["more.txt", "scores.dat"]
    assert resolve_format(listed, "csv") == "csv"
    # Declared parquet wins over a .csv name too; and a directory keeps extension-less part files.
    touch(tmp_path / "parts" / "part-00000")
    touch(tmp_path / "parts" / "part-00001.csv")
    touch(tmp_path / "parts" / "_SUCCESS")
    listed = list_inputs([str(tmp_path / "parts")], "parquet")
    assert paths(listed, tmp_path / "parts") == ["part-00000", "part-00001.csv"]
    assert resolve_format(listed, "parquet") == "parquet"


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["a.parquet", "b.PQ"], "parquet"), (["a.csv", "b.CSV"], "csv"), (["x/y.z/a.parquet"], "parquet")],
)
def test_resolve_format_by_extension(names: list[str], expected: str) -> None:
    assert resolve_format([FileFacts(n, 1, 1) for n in names], "auto") == expected
