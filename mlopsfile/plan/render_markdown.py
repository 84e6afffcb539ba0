"""The plan as a pull-request comment: what a reviewer needs to approve or stop a change.

A summary table (resource, action, model version from → to, rollout strategy, why), the
warnings a reviewer must not miss (what a destroy or replace loses, every plan notice),
then each change's field diff folded in a details block. Pure: the same plan renders to
the same bytes, so a sticky comment only changes when the plan does.
"""

from __future__ import annotations

import re

from mlopsfile.plan.render import SYMBOL, rollout_line, summary_line, value_text
from mlopsfile.plan.types import Action, Change, Plan, RolloutChange

NONE = "—"
MARKER = "<!-- mlopsfile-plan project={project} -->"


def render_markdown(plan: Plan) -> str:
    lines = [MARKER.format(project=_html(plan.project)), f"### mlopsfile plan · project {_code(plan.project)}", ""]
    warnings = plan_warnings(plan)
    lines += [_headline(plan, warnings), ""]
    if plan.has_changes:
        lines += ["| | Resource | Action | Model version | Rollout | Why |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [_row(change) for change in plan.changes]
        lines.append("")
    if warnings:
        lines += ["#### Warnings", ""]
        lines += [f"- {warning}" for warning in warnings]
        lines.append("")
    for change in plan.changes:
        lines += _details(change)
    lines += _models(plan)
    lines += _unchanged(plan)
    return "\n".join(lines).rstrip("\n") + "\n"


def _headline(plan: Plan, warnings: list[str]) -> str:
    if plan.has_changes:
        text = f"**{summary_line(plan)}**"
    elif plan.notices:
        text = "**No changes.** Nothing will be applied; see the warnings below."
    else:
        text = "**No changes.** The live state matches the specs."
    counts = [_count(len(plan.unchanged), "unchanged", "unchanged"), _count(len(warnings), "warning", "warnings"),
              _count(len(plan.models), "model", "models")]
    shown = [c for c in counts if not c.startswith("0 ")]
    return text + (" · " + " · ".join(shown) if shown else "")


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _row(change: Change) -> str:
    cells = [_code(SYMBOL[change.action]), _code(change.address), change.action.value, model_versions(change),
             rollout_strategy(change), _prose(change.reason)]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def model_versions(change: Change) -> str:
    """The model version before → after the change ('—' on a side with none), or the one that stays."""
    rollout = change.rollout
    model = _model_name(change)
    name = f"{_code(model)} " if model else ""
    if rollout is not None and rollout.operation == "end":
        return f"candidate {rollout.from_version or '?'} → {NONE}"
    if rollout is not None and rollout.strategy in ("ab", "shadow") and rollout.candidate_model:
        stable = f"{name}{rollout.from_version or NONE}"
        return f"{stable} + candidate {_code(rollout.candidate_model)} {rollout.to_version or '?'}"
    if rollout is not None:
        return f"{name}{rollout.from_version or NONE} → {rollout.to_version or NONE}"
    moved = next((d for d in change.diffs if d.field == "model_version"), None)
    if moved is not None:
        return f"{name}{moved.old or NONE} → {moved.new or NONE}"
    current = _model_version(change)
    return f"{name}{current} (unchanged)" if current else NONE


def _model_name(change: Change) -> str | None:
    for owner in (change.desired, change.batch, change.edge):
        if owner is not None:
            return owner.model.name
    # A delete carries no desired state; its live model URI is pinned as models:/NAME/VERSION.
    uri = next((str(d.old) for d in change.diffs if d.field == "model_uri" and d.old), "")
    pinned = re.fullmatch(r"models:/([^/@]+)/[^/]+", uri)
    return pinned.group(1) if pinned else None


def _model_version(change: Change) -> str | None:
    for owner in (change.desired, change.batch, change.edge):
        if owner is not None:
            return owner.model.version
    return None


def rollout_strategy(change: Change) -> str:
    """How the change reaches callers, short: 'canary 20% → 50% → 100%', 'blue-green via /x/preview'."""
    rollout = change.rollout
    if rollout is not None:
        return _strategy_of(change, rollout)
    if change.action == Action.UPDATE and change.target != "edge":
        return "in place"
    if change.action in (Action.REPLACE, Action.RUN, Action.UPDATE) and change.kind == "Deployment":
        return "direct"
    return NONE


def _strategy_of(change: Change, rollout: RolloutChange) -> str:
    if rollout.operation == "end":
        return "candidate removed"
    online = change.desired.rollout if change.desired is not None else None
    batch = change.batch.rollout if change.batch is not None else None
    candidate = _code(rollout.candidate_model) if rollout.candidate_model else "the candidate"
    if rollout.strategy == "canary" and online is not None and online.steps:
        return "canary " + " → ".join([f"{weight:g}%" for weight, _ in online.steps] + ["100%"])
    if rollout.strategy == "canary" and batch is not None:
        return f"canary on {batch.sample * 100:g}% of rows"
    if rollout.strategy == "canary" and change.target == "edge":
        return "canary tag, then stable"
    if rollout.strategy == "blue-green" and online is not None:
        return f"blue-green via {_code(online.preview_route or '')}" if online.preview_route else "blue-green"
    if rollout.strategy == "ab" and online is not None:
        return f"ab {online.weight:g}% to {candidate}"
    if rollout.strategy == "shadow" and online is not None:
        return f"shadow {online.sample * 100:g}% mirrored to {candidate}"
    if rollout.strategy == "shadow":
        return f"shadow: every row also scored by {candidate}"
    return rollout.strategy


def plan_warnings(plan: Plan) -> list[str]:
    """Destructive changes (and what they lose), then every notice of the plan."""
    warnings = []
    if plan.mode == "destroy":
        warnings.append("**This plan destroys everything the project runs.**")
    for change in plan.changes:
        loss = _loss(change)
        if loss:
            warnings.append(f"{_code(change.address)} {loss}")
    for notice in plan.notices:
        warnings.append(f"{_code(notice.kind.lower() + '/' + notice.name)}: {_prose(notice.message)}")
    return warnings


def _loss(change: Change) -> str | None:
    old = {d.field: d.old for d in change.diffs}
    rollout = change.rollout
    if change.action == Action.DELETE:
        text = f"**is destroyed**: {_prose(change.reason)}"
        if change.kind == "Deployment" and change.target == "online":
            version = f" (model version {old['model_version']})" if old.get("model_version") else ""
            route = f"route {_code(str(old['route']))} stops answering" if old.get("route") else "it stops answering"
            text += f"; {route} and its replicas{version} are removed"
        return text + "."
    if change.action == Action.REPLACE:
        if change.kind == "Deployment" and change.target == "online":
            forced = sorted(d.field for d in change.diffs if d.forces_replacement)
            because = f" (forced by {', '.join(_code(f) for f in forced)})" if forced else ""
            return (f"**is replaced**{because}: live traffic moves to new replicas (revision {change.revision}); "
                    "the old replicas are removed once the new ones are healthy.")
        return f"**is replaced**: {_prose(change.reason)}."
    if rollout is not None and rollout.operation == "end":
        return f"**ends a rollout**: {_prose(rollout.description)}."
    if rollout is not None and rollout.supersedes:
        return (f"**replaces a rollout in progress**: the candidate of version {rollout.supersedes} is removed "
                f"and version {rollout.to_version} starts over.")
    return None


def _details(change: Change) -> list[str]:
    body = []
    line = rollout_line(change)
    if line:
        body.append(f"# {line}")
    for diff in change.diffs:
        note = "  # forces replacement" if change.action == Action.REPLACE and diff.forces_replacement else ""
        if change.action != Action.CREATE and diff.old is not None:
            body.append(f"- {diff.field} = {value_text(diff.old)}")
        if change.action != Action.DELETE and diff.new is not None:
            body.append(f"+ {diff.field} = {value_text(diff.new)}{note}")
    if not body:
        return []
    fence = _fence("\n".join(body))
    revision = f" (revision {change.revision})" if change.revision else ""  # monitors keep no revisions
    summary = f"<code>{_html(SYMBOL[change.action])} {_html(change.address)}</code>{revision}"
    return [f"<details><summary>{summary}</summary>", "", f"{fence}diff", *body, fence, "", "</details>", ""]


def _models(plan: Plan) -> list[str]:
    if not plan.models:
        return []
    lines = [f"<details><summary>Models ({len(plan.models)}): the pinned versions</summary>", "",
             "| Model | URI | Pinned version | Digest |", "| --- | --- | --- | --- |"]
    for model in plan.models:
        cells = [_code(model.name), _code(model.uri), _prose(model.version), _code(model.digest[:19] + "…")]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return [*lines, "", "</details>", ""]


def _unchanged(plan: Plan) -> list[str]:
    held = {(n.kind, n.name) for n in plan.notices}
    items = [u for u in plan.unchanged if (u.kind, u.name) not in held]
    if not items:
        return []
    lines = [f"<details><summary>Unchanged ({len(items)})</summary>", ""]
    lines += [f"- {_code(item.kind.lower() + '/' + item.name)}: {_prose(item.reason)}" for item in items]
    return [*lines, "", "</details>", ""]


# -- escaping --------------------------------------------------------------------------


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MARKDOWN_SPECIAL = re.compile(r"([\\*_~\[\]])")


def _plain(text: str) -> str:
    """Text outside code spans: no HTML, no emphasis or links made by accident."""
    return _html(_MARKDOWN_SPECIAL.sub(r"\\\1", text))


def _prose(text: str) -> str:
    """Planner sentences quote commands in backticks: keep balanced ones as code spans, escape the rest."""
    parts = text.split("`")
    if len(parts) % 2 == 0:
        return _plain(text).replace("`", "\\`")
    return "".join(f"`{part}`" if index % 2 and part else _plain(part) for index, part in enumerate(parts))


def _code(text: str) -> str:
    """An inline code span that survives backticks in its text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _cell(text: str) -> str:
    """GitHub splits table cells at '|' even inside code spans; a newline would end the row."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
