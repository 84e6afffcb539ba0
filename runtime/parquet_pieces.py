"""A batch job's parquet input cut into read tasks, planned from the files' footers.

The job reads every footer anyway, to check the columns before scoring anything, and a
footer gives the rows and the uncompressed size of each row group. So the reads are planned
from them: runs of whole row groups (never across files), about ``PIECES_PER_REPLICA`` per
model replica, each read with pyarrow, only the columns the job uses. No task has to sample
the files first, and a file with several row groups can be shared by several replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runtime.batch_files import opened

PIECES_PER_REPLICA = 4  # enough for a replica that is done early to take work a slower one would have had


@dataclass(frozen=True)
class Footer:
    """What one file's footer says: its columns, and its row groups' rows and uncompressed bytes."""

    path: str
    names: list[str]
    rows: list[int]
    bytes: list[int]


@dataclass(frozen=True)
class Piece:
    """Consecutive row groups of one file: what one read task reads."""

    path: str
    row_groups: tuple[int, ...]
    rows: int
    bytes: int


def read_footer(path: str) -> Footer:
    import pyarrow.parquet as pq

    with opened(path) as source:
        metadata = pq.read_metadata(source)
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    return Footer(path, list(metadata.schema.to_arrow_schema().names), [g.num_rows for g in groups],
                  [g.total_byte_size for g in groups])


def plan_pieces(footers: list[Footer], replicas: int) -> list[Piece]:
    """Runs of row groups, file by file, each of at least total / (PIECES_PER_REPLICA x replicas) rows
    (a file's last run may be shorter). Empty files read nothing; if all are, one empty piece keeps
    the input's columns."""
    least = max(1, sum(sum(f.rows) for f in footers) // (PIECES_PER_REPLICA * max(1, replicas)))
    pieces: list[Piece] = []
    for footer in footers:
        start = 0
        for end in range(len(footer.rows)):
            rows = sum(footer.rows[start:end + 1])
            if rows >= least or end == len(footer.rows) - 1:
                if rows:
                    pieces.append(Piece(footer.path, tuple(range(start, end + 1)), rows,
                                        sum(footer.bytes[start:end + 1])))
                start = end + 1
    return pieces or [Piece(footers[0].path, (), 0, 0)]


def block_rows(pieces: list[Piece], replicas: int, batch_size: int, max_block_bytes: int) -> int:
    """Rows per block read: few enough to stay under ``max_block_bytes`` in memory, and to give every
    replica blocks when one piece is all there is; never fewer than one model call's rows."""
    rows = sum(p.rows for p in pieces)
    if not rows:
        return batch_size
    by_memory = max(1, max_block_bytes * rows // max(1, sum(p.bytes for p in pieces)))
    by_spread = -(-rows // (PIECES_PER_REPLICA * max(1, replicas)))
    return max(batch_size, min(by_memory, by_spread))


def read_piece(piece: Piece, columns: list[str] | None, rows_per_block: int) -> Iterator[Any]:
    """The piece's rows as pyarrow tables of at most ``rows_per_block`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with opened(piece.path) as source, pq.ParquetFile(source) as file:
        for batch in file.iter_batches(batch_size=rows_per_block, row_groups=list(piece.row_groups), columns=columns):
            yield pa.Table.from_batches([batch])
