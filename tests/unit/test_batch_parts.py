"""Replicas write their scored blocks as parts; the driver keeps exactly the parts delivered to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.batch_parts import (
    PART_COLUMN,
    ROWS_COLUMN,
    commit_parts,
    delivered_parts,
    merge_small_parts,
    write_part,
)


def scored(rows: int, first: int = 0) -> pd.DataFrame:
    # An index that is not 0-based, as a slice of a bigger block has: it must not become a column.
    return pd.DataFrame({"id": np.arange(first, first + rows), "prediction": np.arange(rows) % 3},
                        index=np.arange(rows) + 50)


def test_a_part_holds_the_block_and_its_row_names_it(tmp_path: Path) -> None:
    named = write_part(scored(1000, first=7), str(tmp_path))
    assert list(named.columns) == [PART_COLUMN, ROWS_COLUMN] and named[ROWS_COLUMN].tolist() == [1000]
    name = named[PART_COLUMN].iloc[0]
    assert name.startswith("part-") and name.endswith(".parquet")
    table = pq.read_table(tmp_path / name)
    assert table.column_names == ["id", "prediction"]
    assert table["id"].to_pylist() == list(range(7, 1007))


def test_two_writes_of_the_same_rows_are_two_parts(tmp_path: Path) -> None:
    # A retried task writes again: its parts must not overwrite what the first attempt delivered.
    first = write_part(scored(10), str(tmp_path))[PART_COLUMN].iloc[0]
    second = write_part(scored(10), str(tmp_path))[PART_COLUMN].iloc[0]
    assert first != second and sorted(p.name for p in tmp_path.iterdir()) == sorted([first, second])


def test_an_empty_block_writes_nothing(tmp_path: Path) -> None:
    named = write_part(scored(0), str(tmp_path))
    assert len(named) == 0 and list(named.columns) == [PART_COLUMN, ROWS_COLUMN]
    assert not list(tmp_path.iterdir())


class Delivered:
    """What Ray Data hands the driver: the replicas' frames as pyarrow batches, some empty."""

    def __init__(self, frames: list[pd.DataFrame]) -> None:
        self.frames = frames

    def iter_batches(self, batch_format: str, batch_size: int | None) -> Iterator[pa.Table]:
        assert (batch_format, batch_size) == ("pyarrow", None)
        for frame in self.frames:
            yield pa.Table.from_pandas(frame, preserve_index=False)


def test_the_driver_learns_every_part_and_the_rows_scored(tmp_path: Path) -> None:
    frames = [write_part(scored(rows), str(tmp_path)) for rows in (300, 0, 200, 1)]
    names, rows = delivered_parts(Delivered(frames))
    assert rows == 501 and len(names) == 3
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())


def test_commit_removes_what_was_not_delivered(tmp_path: Path) -> None:
    kept = [write_part(scored(5), str(tmp_path))[PART_COLUMN].iloc[0] for _ in range(2)]
    write_part(scored(5), str(tmp_path))  # an attempt whose task Ray retried: never delivered
    commit_parts(tmp_path, kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_commit_refuses_a_part_delivered_twice_or_not_written(tmp_path: Path) -> None:
    name = write_part(scored(5), str(tmp_path))[PART_COLUMN].iloc[0]
    with pytest.raises(RuntimeError, match="delivered twice"):
        commit_parts(tmp_path, [name, name])
    with pytest.raises(RuntimeError, match=r"part-missing\.parquet was delivered but is not in"):
        commit_parts(tmp_path, [name, "part-missing.parquet"])
    assert [p.name for p in tmp_path.iterdir()] == [name]  # a refused commit removes nothing


def part_sizes(directory: Path) -> list[int]:
    return sorted(pq.read_metadata(p).num_rows for p in directory.iterdir())


def test_many_small_parts_are_merged_with_every_row(tmp_path: Path) -> None:
    # One small part per small input file; one of them has a column that is null throughout.
    for number in range(30):
        write_part(scored(10, first=number * 10), str(tmp_path))
    write_part(pd.DataFrame({"id": [300, 301], "prediction": [None, None]}), str(tmp_path))
    merge_small_parts(tmp_path)
    assert part_sizes(tmp_path) == [302]
    table = pq.read_table(tmp_path)
    assert sorted(table["id"].to_pylist()) == list(range(302))
    assert table["prediction"].null_count == 2 and str(table.schema.field("prediction").type) == "int64"


def test_merged_parts_stay_under_the_cap(tmp_path: Path) -> None:
    for _ in range(12):
        write_part(scored(100), str(tmp_path))
    one = next(tmp_path.iterdir()).stat().st_size
    merge_small_parts(tmp_path, small_bytes=10 * one, merged_bytes=4 * one)
    assert part_sizes(tmp_path) == [400, 400, 400]


def test_parts_large_enough_are_left_as_written(tmp_path: Path) -> None:
    names = sorted(write_part(scored(100), str(tmp_path))[PART_COLUMN].iloc[0] for _ in range(3))
    one = (tmp_path / names[0]).stat().st_size
    merge_small_parts(tmp_path, small_bytes=one // 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == names
