"""Parquet reads planned from the footers: pieces of whole row groups sized for the replicas,
read back exactly, with only the columns asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.parquet_pieces import PIECES_PER_REPLICA, Piece, block_rows, plan_pieces, read_footer, read_piece


def write(path: Path, first_id: int, rows: int, row_group_rows: int) -> pa.Table:
    rng = np.random.default_rng(first_id)
    table = pa.table({"id": np.arange(first_id, first_id + rows), "x": rng.normal(size=rows),
                      "unused": rng.normal(size=rows)})
    pq.write_table(table, path, row_group_size=row_group_rows)
    return table


def read_all(pieces: list[Piece], columns: list[str] | None, rows_per_block: int) -> pa.Table:
    tables = [table for piece in pieces for table in read_piece(piece, columns, rows_per_block)]
    assert all(t.num_rows <= rows_per_block for t in tables)
    return pa.concat_tables(tables)


def test_one_piece_per_file_when_files_are_the_unit(tmp_path: Path) -> None:
    tables = [write(tmp_path / f"part-{i}.parquet", i * 250, 250, 1000) for i in range(8)]
    footers = [read_footer(str(tmp_path / f"part-{i}.parquet")) for i in range(8)]

    pieces = plan_pieces(footers, replicas=2)

    assert [p.path for p in pieces] == [f.path for f in footers]
    assert [p.rows for p in pieces] == [250] * 8
    assert footers[0].names == ["id", "x", "unused"]
    assert read_all(pieces, ["id", "x"], 100).equals(pa.concat_tables(tables).select(["id", "x"]))


@pytest.mark.parametrize(("replicas", "groups_per_piece"), [(2, 1), (1, 2), (8, 1)])
def test_a_single_file_is_shared_by_its_row_groups(tmp_path: Path, replicas: int, groups_per_piece: int) -> None:
    table = write(tmp_path / "one.parquet", 0, 800, 100)  # 8 row groups
    footer = read_footer(str(tmp_path / "one.parquet"))

    pieces = plan_pieces([footer], replicas)

    assert len(footer.rows) == 8
    assert all(len(p.row_groups) == groups_per_piece for p in pieces)
    assert [g for p in pieces for g in p.row_groups] == list(range(8))  # every row group, once, in order
    assert sum(p.rows for p in pieces) == 800
    assert read_all(pieces, None, 64).equals(table)


def test_a_piece_never_spans_files_and_short_files_stay_whole(tmp_path: Path) -> None:
    write(tmp_path / "big.parquet", 0, 1000, 100)
    write(tmp_path / "small.parquet", 1000, 30, 100)
    footers = [read_footer(str(tmp_path / name)) for name in ("big.parquet", "small.parquet")]

    pieces = plan_pieces(footers, replicas=2)

    least = 1030 // (PIECES_PER_REPLICA * 2)
    assert all(p.rows >= least for p in pieces if p.path.endswith("big.parquet"))
    assert [p for p in pieces if p.path.endswith("small.parquet")] == [
        Piece(footers[1].path, (0,), 30, footers[1].bytes[0])]


def test_empty_files_read_nothing_but_keep_one_piece(tmp_path: Path) -> None:
    empty = pa.table({"id": pa.array([], pa.int64()), "x": pa.array([], pa.float64())})
    pq.write_table(empty, tmp_path / "empty.parquet")
    footer = read_footer(str(tmp_path / "empty.parquet"))

    pieces = plan_pieces([footer], replicas=2)

    assert [p.rows for p in pieces] == [0]
    assert sum(t.num_rows for t in read_piece(pieces[0], None, 10)) == 0
    assert block_rows(pieces, 2, 4096, 1 << 20) == 4096


def test_blocks_stay_under_the_memory_bound_spread_over_replicas_and_hold_a_batch() -> None:
    pieces = [Piece("a.parquet", (0,), 1_000_000, 100_000_000)]  # 100 bytes a row
    assert block_rows(pieces, 2, 4096, 128 * 1_000_000) == 1_000_000 // (PIECES_PER_REPLICA * 2)
    assert block_rows(pieces, 1, 4096, 10_000_000) == 100_000  # 10 MB of 100-byte rows
    assert block_rows(pieces, 2, 500_000, 10_000_000) == 500_000  # never below one model call
