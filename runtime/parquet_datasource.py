"""Ray Data's view of the planned parquet pieces (runtime/parquet_pieces.py): one read task each."""

from __future__ import annotations

import functools
from typing import Any

from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from runtime.parquet_pieces import Piece, read_piece


class ParquetPieces(Datasource):
    """Exactly the planned pieces as read tasks, whatever parallelism Ray Data asks for: the plan
    already sized them for the replicas, and one task per piece lets Ray Data fuse the reads into
    the replicas."""

    def __init__(self, pieces: list[Piece], columns: list[str] | None, rows_per_block: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.columns = columns
        self.rows_per_block = rows_per_block

    def get_name(self) -> str:
        return "Parquet"

    def estimate_inmemory_data_size(self) -> int:
        return sum(piece.bytes for piece in self.pieces)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        return [ReadTask(functools.partial(read_piece, piece, self.columns, self.rows_per_block),
                         BlockMetadata(num_rows=piece.rows, size_bytes=piece.bytes, exec_stats=None,
                                       input_files=(piece.path,)),
                         per_task_row_limit=per_task_row_limit)
                for piece in self.pieces]
