"""A block scored in slices of the spec's ``batch_size``: what a model replica sees at a time.

Ray Data hands each replica whole blocks (a whole input file when reads run inside the
replicas, see ``batch_job._read``), so the replica, not Ray Data, cuts them to the declared
batch size: the model's memory per call stays what the spec says, and nothing between the
read and the model holds Ray Data from fusing the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def score_in_slices(block: Any, batch_size: int, score: Callable[[Any], Any]) -> Any:
    """``score`` over consecutive slices of at most ``batch_size`` rows, concatenated in order."""
    import pandas as pd

    if len(block) <= batch_size:
        return score(block)
    return pd.concat([score(block.iloc[start:start + batch_size]) for start in range(0, len(block), batch_size)],
                     ignore_index=True)
