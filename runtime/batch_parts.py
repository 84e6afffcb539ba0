"""The output of a batch run as parts its model replicas write themselves, and their commit.

Each replica writes every block it scored as one parquet part in the run's staging
directory and hands Ray Data only the part's name and row count. The scored rows thus
never go through the object store, and no write tasks (nor the worker processes they
would start) compete with the replicas for the machine's cores.

A task that Ray retries (its replica died) writes its parts again under new names, so a
part that is in the staging directory is not necessarily part of the output: the parts
are those whose names Ray Data delivered to the driver, each block's once. The driver
removes every other file before it describes and publishes the run.

An input of many small files gives as many small parts (a block never spans two files);
the driver then merges them, so readers of the output are not handed thousands of files.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

PART_COLUMN = "part"
ROWS_COLUMN = "rows"
SMALL_PART_BYTES = 1 << 20  # on disk: parts this small on average are merged
MERGED_PART_BYTES = 64 << 20  # on disk: what merged parts grow to, at most


def parts_in(staging: Path) -> list[Path]:
    """The parquet parts in ``staging``, in name order."""
    return sorted(p for p in staging.iterdir() if p.suffix == ".parquet")


def _part_name() -> str:
    return f"part-{uuid.uuid4().hex}.parquet"


def write_part(scored: Any, staging: str) -> Any:
    """Write a scored pandas block as ``staging/part-<random>.parquet``; return a frame naming it
    (no row for an empty block, which writes nothing)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not len(scored):
        return pd.DataFrame({PART_COLUMN: pd.Series([], dtype=object), ROWS_COLUMN: pd.Series([], dtype="int64")})
    name = _part_name()
    pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), Path(staging) / name)
    return pd.DataFrame({PART_COLUMN: [name], ROWS_COLUMN: [len(scored)]})


def delivered_parts(dataset: Any) -> tuple[list[str], int]:
    """Run ``dataset`` (of frames from ``write_part``) to its end: the names of the parts it wrote, and their rows."""
    names: list[str] = []
    rows = 0
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        names.extend(batch[PART_COLUMN].to_pylist())
        rows += sum(batch[ROWS_COLUMN].to_pylist())
    return names, rows


def commit_parts(staging: Path, delivered: list[str]) -> None:
    """Leave in ``staging`` exactly the delivered parts: what retried attempts wrote besides goes."""
    if len(set(delivered)) != len(delivered):
        raise RuntimeError("a part of the output was delivered twice")
    missing = [name for name in delivered if not (staging / name).is_file()]
    if missing:
        raise RuntimeError(f"the output part {missing[0]} was delivered but is not in {staging}")
    keep = set(delivered)
    for path in staging.iterdir():
        if path.name not in keep:
            path.unlink()


def merge_small_parts(staging: Path, small_bytes: int = SMALL_PART_BYTES, merged_bytes: int = MERGED_PART_BYTES) -> None:
    """Merge the parts in ``staging`` into parts of up to ``merged_bytes`` when they average under
    ``small_bytes``; parts that large are left as written. One part at a time is in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = parts_in(staging)
    sizes = {part: part.stat().st_size for part in parts}
    if len(parts) < 2 or sum(sizes.values()) >= small_bytes * len(parts):
        return
    groups: list[list[Path]] = [[]]
    size = 0
    for part in parts:
        if groups[-1] and size + sizes[part] > merged_bytes:
            groups.append([])
            size = 0
        groups[-1].append(part)
        size += sizes[part]
    for group in (g for g in groups if len(g) > 1):
        # A column that is all nulls in one part has the null type there: the merged schema widens it.
        schema = pa.unify_schemas([pq.read_schema(part) for part in group], promote_options="permissive")
        with pq.ParquetWriter(staging / _part_name(), schema) as writer:
            for part in group:
                writer.write_table(pq.read_table(part).cast(schema))
        for part in group:
            part.unlink()
