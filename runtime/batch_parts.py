"""The output of a batch run as parts its model replicas write themselves, and their commit.

Each replica writes every block it scored as one parquet part in the run's staging
directory and hands Ray Data only the part's name and row count. The scored rows thus
never go through the object store, and no write tasks (nor the worker processes they
would start) compete with the replicas for the machine's cores.

A task that Ray retries (its replica died) writes its parts again under new names, so a
part that is in the staging directory is not necessarily part of the output: the parts
are those whose names Ray Data delivered to the driver, each block's once. The driver
removes every other file before it describes and publishes the run.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

PART_COLUMN = "part"
ROWS_COLUMN = "rows"


def write_part(scored: Any, staging: str) -> Any:
    """Write a scored pandas block as ``staging/part-<random>.parquet``; return a frame naming it
    (no row for an empty block, which writes nothing)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not len(scored):
        return pd.DataFrame({PART_COLUMN: pd.Series([], dtype=object), ROWS_COLUMN: pd.Series([], dtype="int64")})
    name = f"part-{uuid.uuid4().hex}.parquet"
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
