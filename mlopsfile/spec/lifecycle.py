"""The ``lifecycle`` block of Deployments and Monitors: guards on what apply may do."""

from __future__ import annotations

from pydantic import Field

from mlopsfile.spec.common import Strict


class Lifecycle(Strict):
    """How mlopsfile may treat the live resource (Terraform's ``lifecycle`` block)."""

    prevent_destroy: bool = Field(
        default=False,
        description=(
            "Refuse any plan that would delete this resource (its spec removed, or `destroy`) or replace it by "
            "stopping it first. Apply records the flag, so removing the spec of a protected resource is refused "
            "too, until prevent_destroy: false has been applied."
        ),
    )
