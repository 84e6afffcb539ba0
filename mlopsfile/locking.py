"""Resolving models through mlopsfile.lock, and writing or checking the lock against the registry.

With a lock, a plan is made from the versions in git, not from wherever an alias points
today: the registry is asked only to confirm that each locked version still exists with
the same artifacts, and whether the spec's alias has moved since (a notice, not a change).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlopsfile.desired import ModelResolver
from mlopsfile.errors import MlopsfileError, PlanError, ResolveError, SpecError, SpecErrors
from mlopsfile.lockfile import LOCK_FILE, LockedModel, LockFile, LockFileError, read_lock, write_lock
from mlopsfile.spec.loader import _display
from mlopsfile.spec.specset import SpecSet
from mlopsfile.values import ResolvedModel


class LockOutOfDate(MlopsfileError):
    """`lock --check`: the lock is missing or differs from what the registry resolves now."""


def through_lock(registry: ModelResolver, root: Path) -> ModelResolver:
    """The registry seen through the project's lock, when it has one (read on every call: a
    long-running watch sees the lock of the commit it applies)."""
    path = root / LOCK_FILE
    shown = _display(path, None)
    lock = read_lock(path, shown)
    return registry if lock is None else LockedResolver(registry, lock, shown)


def run_lock(specset: SpecSet, registry: ModelResolver, root: Path, now: str,
             update: Collection[str] | None = None, check: bool = False) -> LockResult:
    """`mlopsfile lock`: write the lock (or, with ``check``, raise LockOutOfDate when it is not current).

    A full re-lock replaces an unreadable lock (it is how one is repaired); an update or a
    check needs to read it.
    """
    path = root / LOCK_FILE
    shown = _display(path, None)
    try:
        existing = read_lock(path, shown)
    except LockFileError:
        if check or update is not None:
            raise
        existing = None
    result = lock_models(specset, registry, existing, now, update)
    if check:
        message = check_message(result, existing)
        if message is not None:
            raise LockOutOfDate(message)
    elif existing is None or result.lock != existing:
        write_lock(path, result.lock)
    return result


class LockedResolver:
    """Resolves each Model to the version mlopsfile.lock pins, after checking it against the registry."""

    def __init__(self, registry: ModelResolver, lock: LockFile, file: str = LOCK_FILE) -> None:
        self.registry = registry
        self.lock = lock
        self.file = file

    def resolve(self, name: str, uri: str) -> ResolvedModel:
        entry = self.lock.models.get(name)
        if entry is None:
            raise ResolveError(f"model {name!r} is not in {self.file}; run `mlopsfile lock` to pin it")
        if entry.uri != uri:
            raise ResolveError(f"{self.file} pins model {name!r} for {entry.uri}, not {uri}; "
                               f"run `mlopsfile lock --update {name}`")
        try:
            pinned = self.registry.resolve(name, entry.pinned_uri)
        except ResolveError as exc:
            raise ResolveError(f"{self.file} pins model {name!r} to {entry.pinned_uri}, "
                               f"which the registry no longer has: {exc}") from exc
        if pinned.digest != entry.digest:
            raise ResolveError(
                f"{self.file}: the artifacts of model {name!r} ({entry.pinned_uri}) changed since it was locked "
                f"(digest {_short(pinned.digest)}, locked {_short(entry.digest)}); nothing is planned from them. "
                f"If the change is intended, run `mlopsfile lock --update {name}`")
        return pinned.model_copy(update={"uri": uri, "alias": entry.alias, "locked": True,
                                         "lock_notice": self._moved(name, uri, entry)})

    def _moved(self, name: str, uri: str, entry: LockedModel) -> str | None:
        """How the spec's URI resolves now, when that is not the locked version (aliases, latest)."""
        if uri == entry.pinned_uri:
            return None
        what = f"alias @{entry.alias}" if entry.alias else uri
        pins = (f"{self.file} pins version {entry.version} (plan uses {entry.version}; "
                f"run `mlopsfile lock` to move)")
        try:
            now = self.registry.resolve(name, uri)
        except ResolveError as exc:
            return f"{what} no longer resolves ({exc}); {pins}"
        if now.version == entry.version:
            return None
        return f"{what} now resolves to version {now.version}; {pins}"


@dataclass(frozen=True)
class LockChange:
    """One way a lock differs from what the registry resolves now."""

    name: str
    kind: Literal["added", "updated", "removed", "kept"]
    message: str


@dataclass(frozen=True)
class LockResult:
    lock: LockFile
    changes: tuple[LockChange, ...]

    @property
    def moved(self) -> tuple[LockChange, ...]:
        return tuple(c for c in self.changes if c.kind != "kept")


def lock_models(specset: SpecSet, registry: ModelResolver, existing: LockFile | None, now: str,
                update: Collection[str] | None = None) -> LockResult:
    """The lock the specs and the registry give now.

    ``update`` names the models to resolve again (all when None); the others keep their
    locked entry, unless they are new or their URI changed. An entry that resolves to what
    it already pins keeps its ``resolved_at``, so re-locking an unchanged registry changes
    nothing in the file.
    """
    old = existing.models if existing else {}
    unknown = sorted(set(update or ()) - set(specset.models))
    if unknown:
        raise PlanError(f"no Model named {', '.join(map(repr, unknown))} in the specs")
    entries: dict[str, LockedModel] = {}
    changes: list[LockChange] = []
    errors: list[SpecError] = []
    for name in sorted(specset.models):
        uri = specset.model(name).spec.uri
        previous = old.get(name)
        if previous is not None and previous.uri == uri and update is not None and name not in update:
            entries[name] = previous
            changes.append(LockChange(name, "kept", f"model {name!r}: version {previous.version} kept"))
            continue
        try:
            fresh = LockedModel.of(registry.resolve(name, uri), now)
        except ResolveError as exc:
            errors.append(specset.models[name].error(str(exc), "spec", "uri"))
            continue
        if previous is not None and previous.same_pin(fresh):
            entries[name] = previous
            changes.append(LockChange(name, "kept", f"model {name!r}: version {previous.version} still current"))
            continue
        entries[name] = fresh
        changes.append(_change(name, previous, fresh))
    if errors:
        raise SpecErrors(errors)
    for name in sorted(set(old) - set(specset.models)):
        changes.append(LockChange(name, "removed", f"model {name!r} is locked but no longer in the specs"))
    return LockResult(LockFile(models=entries), tuple(changes))


def _change(name: str, previous: LockedModel | None, fresh: LockedModel) -> LockChange:
    if previous is None:
        return LockChange(name, "added", f"model {name!r} is not locked (resolves to version {fresh.version})")
    if previous.uri != fresh.uri:
        return LockChange(name, "updated", f"model {name!r}: uri {previous.uri} -> {fresh.uri} "
                                           f"(version {previous.version} -> {fresh.version})")
    if previous.version != fresh.version:
        return LockChange(name, "updated", f"model {name!r}: {fresh.uri} now resolves to version {fresh.version} "
                                           f"(locked: {previous.version})")
    return LockChange(name, "updated", f"model {name!r}: the artifacts of {fresh.pinned_uri} changed "
                                       f"(digest {_short(fresh.digest)}, locked {_short(previous.digest)})")


def check_message(result: LockResult, existing: LockFile | None) -> str | None:
    """One line for CI when the lock is missing or out of date; None when it is current."""
    if existing is None:
        return f"no {LOCK_FILE}; run `mlopsfile lock` and commit it"
    moved = result.moved
    if not moved:
        return None
    more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
    return f"{LOCK_FILE} is out of date: {moved[0].message}{more}; run `mlopsfile lock`"


def _short(digest: str) -> str:
    return digest[:19] + "…"
