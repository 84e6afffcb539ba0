"""Edge deployments in the plan: which image to build, push or bundle, and which channel tags move.

Pure, like the rest of the planner. An image is identified by its build key (model,
ONNX, server code, wheels, base image), so an apply that finds the key among the
deployment's images builds nothing. A direct rollout moves `stable` (and `canary`) onto
the new build; a canary moves only `canary` and leaves `stable` to `mlopsfile promote`.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlopsfile.edge_resources import DesiredEdge, EdgeImage, ObservedEdge
from mlopsfile.plan.types import Action, Change, EdgeChange, FieldDiff, Hold, Notice, RolloutChange, Unchanged
from mlopsfile.resources import DesiredState, ObservedState


def plan_edges(desired: DesiredState, observed: ObservedState, last_revisions: Mapping[str, int],
               holds: Mapping[str, Hold]) -> list[Change | Notice | Unchanged]:
    outcomes: list[Change | Notice | Unchanged] = []
    for want in desired.edges:
        hold = holds.get(want.name)
        if hold is not None and hold.spec_digest != want.spec_digest:
            hold = None
        revision = last_revisions.get(want.name, 0) + 1
        outcomes.append(_edge_outcome(want, observed.edge(want.name), revision, hold))
    return outcomes


def remove_orphan_edges(desired: DesiredState, observed: ObservedState, project: str,
                        last_revisions: Mapping[str, int]) -> list[Change]:
    """Images of edge deployments whose spec was removed are deleted (devices keep what they pulled)."""
    wanted = {e.name for e in desired.edges}
    return [Change(action=Action.DELETE, name=live.name, target="edge", revision=last_revisions.get(live.name, 0) + 1,
                   reason=f"its spec was removed; its {len(live.images)} image(s) in {live.repository} are deleted",
                   diffs=tuple(_channel_diffs(live, None)))
            for live in observed.edges if live.project == project and live.name not in wanted and live.images]


def _edge_outcome(want: DesiredEdge, live: ObservedEdge | None, revision: int,
                  hold: Hold | None) -> Change | Notice | Unchanged:
    key = want.build.key
    image = live.build(key) if live is not None else None
    stable = live.tagged("stable") if live is not None else None
    canary = live.tagged("canary") if live is not None else None
    tags = _tags_to_move(want, key, stable, canary)
    held = hold is not None and "stable" in tags and stable is not None
    if held:
        tags = tuple(t for t in tags if t != "stable")
    push = want.registry is not None and (image is None or want.remote() not in image.pushed)
    bundle = want.bundle is not None and (live is None or want.bundle_name() not in live.bundles)
    steps = EdgeChange(build=image is None, push=push, bundle=bundle, tags=tags)
    if not (steps.build or steps.push or steps.bundle or steps.tags):
        if held:
            assert hold is not None
            return Notice(name=want.name, message=(
                f"stable serves version {stable.model_version if stable else '?'}, the specs want version "
                f"{want.model.version}: {hold.reason} ({hold.outcome} at {hold.at}). Nothing moves until the spec "
                "changes, or you run `mlopsfile apply --retry`."))
        return Unchanged(name=want.name, reason=f"up to date (image of model version {want.model.version}, "
                                                f"{_channels_text(live)})")
    fresh = live is None or not live.images
    action = Action.CREATE if fresh else Action.ROLLOUT if tags == ("canary",) else Action.UPDATE
    rollout = None
    if action == Action.ROLLOUT:
        rollout = RolloutChange(strategy="canary", from_version=stable.model_version if stable else None,
                                to_version=want.model.version, candidate_model=want.model.name,
                                description="the `canary` tag moves first; `mlopsfile promote` moves `stable`")
    return Change(action=action, name=want.name, target="edge", revision=revision, edge=want, edge_steps=steps,
                  reason=_reason(want, live, stable, steps), diffs=tuple(_diffs(want, live, steps)), rollout=rollout)


def _tags_to_move(want: DesiredEdge, key: str, stable: EdgeImage | None, canary: EdgeImage | None) -> tuple[str, ...]:
    wanted = ["canary"]
    # A first image has no stable to protect: devices on either channel get it.
    if want.channel == "stable" or stable is None:
        wanted.append("stable")
    current = {"stable": stable, "canary": canary}
    return tuple(tag for tag in wanted if current[tag] is None or current[tag].build_key != key)  # type: ignore[union-attr]


def _reason(want: DesiredEdge, live: ObservedEdge | None, stable: EdgeImage | None, steps: EdgeChange) -> str:
    model = want.model
    source = f"alias @{model.alias}" if model.alias else model.uri
    parts = []
    if live is None or not live.images:
        parts.append(f"it does not exist yet; model {model.name} version {model.version} is converted to ONNX "
                     f"({want.parity.summary}) and built into {want.image}")
    elif steps.build:
        if stable is not None and stable.model_version != model.version:
            parts.append(f"model {model.name} ({source}) moves from version {stable.model_version} to "
                         f"{model.version}; a new image is built ({want.parity.summary})")
        else:
            parts.append(f"the image of version {model.version} is built again: its build inputs changed "
                         "(base image, quantization, server code or model artifacts)")
    elif steps.tags:
        parts.append(f"{' and '.join(steps.tags)} move{'s' if len(steps.tags) == 1 else ''} to the existing image "
                     f"of version {model.version}")
    if steps.tags == ("canary",):
        parts.append("through the canary channel: `stable` stays until `mlopsfile promote`")
    if steps.push:
        parts.append(f"pushed to {want.registry}")
    if steps.bundle:
        parts.append(f"bundle {want.bundle_name()} written to {want.bundle}")
    return "; ".join(parts)


def _channel(image: EdgeImage | None) -> str | None:
    return None if image is None else f"version {image.model_version} ({image.build_key[:8]})"


def _channels_text(live: ObservedEdge | None) -> str:
    if live is None:
        return "no channels"
    return ", ".join(f"{tag} {_channel(live.tagged(tag))}" for tag in ("stable", "canary") if live.tagged(tag))


def _channel_diffs(live: ObservedEdge | None, want: DesiredEdge | None, moving: tuple[str, ...] = ("stable", "canary")
                   ) -> list[FieldDiff]:
    diffs = []
    for tag in moving:
        old = _channel(live.tagged(tag)) if live is not None else None
        new = f"version {want.model.version} ({want.build.key[:8]})" if want is not None else None
        if old != new:
            diffs.append(FieldDiff(field=tag, old=old, new=new))
    return diffs


def _diffs(want: DesiredEdge, live: ObservedEdge | None, steps: EdgeChange) -> list[FieldDiff]:
    diffs = _channel_diffs(live, want, steps.tags)
    if steps.build:
        diffs.insert(0, FieldDiff(field="image", old=None, new=f"{want.image}:{want.model.version}",
                                  forces_replacement=True))
    if steps.push:
        diffs.append(FieldDiff(field="registry", old=None, new=f"{want.remote()}:{want.model.version}"))
    if steps.bundle:
        diffs.append(FieldDiff(field="bundle", old=None, new=want.bundle_name()))
    return diffs
