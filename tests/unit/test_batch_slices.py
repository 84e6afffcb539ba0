"""A replica scores a block in slices of the spec's batch_size, and the slices come back in order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runtime.batch_slices import score_in_slices


def doubled(seen: list[int]):
    def score(batch: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(batch))
        out = batch[["id"]].reset_index(drop=True)
        out["prediction"] = batch["x"].to_numpy() * 2
        return out
    return score


@pytest.mark.parametrize(("rows", "batch_size", "calls"), [
    (10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 4, [3]), (0, 4, [0]), (1, 1, [1]),
])
def test_each_call_sees_at_most_batch_size_rows_and_the_rows_stay_in_order(rows: int, batch_size: int,
                                                                           calls: list[int]) -> None:
    rng = np.random.default_rng(rows)
    # An index that is neither 0-based nor sorted, as a block sliced out of a bigger frame can have.
    block = pd.DataFrame({"id": np.arange(rows) + 100, "x": rng.normal(size=rows)}, index=rng.permutation(rows) + 7)
    seen: list[int] = []

    scored = score_in_slices(block, batch_size, doubled(seen))

    assert seen == calls
    assert list(scored.index) == list(range(rows))
    assert scored["id"].tolist() == block["id"].tolist()
    assert np.array_equal(scored["prediction"].to_numpy(), block["x"].to_numpy() * 2)

