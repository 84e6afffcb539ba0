"""The reconcile loop: drive every active rollout from the state store, one tick at a time.

``apply --wait`` runs it in the foreground until the rollouts it cares about end;
``mlopsfile watch`` runs the same loop forever. Each rollout it drives is held under a
lock of its own (``rollout:<name>``), so two loops never drive one rollout; a lock left
by a process that was killed is taken over (see StateStore.acquire_lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from mlopsfile.controller.rollouts import Events, RolloutController
from mlopsfile.errors import DriverError, LockError
from mlopsfile.state.rollouts import RolloutRecord
from mlopsfile.state.store import Lock, StateStore

DEFAULT_TICK_S = 1.0


def rollout_lock_scope(name: str) -> str:
    return f"rollout:{name}"


class ReconcileLoop:
    def __init__(self, store: StateStore, controller: RolloutController, tick_s: float = DEFAULT_TICK_S,
                 events: Events | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.controller = controller
        self.tick_s = tick_s
        self.events = events or (lambda *_: None)
        self.sleep = sleep
        self.locks: dict[str, Lock] = {}

    def run(self, names: Iterable[str] | None = None,
            until: Callable[[RolloutRecord], bool] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> dict[str, RolloutRecord]:
        """Tick until no wanted rollout is active (or ``until`` says a rollout is far enough)."""
        wanted = set(names) if names is not None else None
        last: dict[str, RolloutRecord] = {}
        try:
            while not should_stop():
                active = [r for r in self.store.active_rollouts() if wanted is None or r.name in wanted]
                active = [r for r in active if until is None or not until(r)]
                if not active:
                    break
                for record in active:
                    self._hold(record.name)
                    try:
                        last[record.name] = self.controller.tick(record)
                    except DriverError as exc:
                        if not exc.temporary:
                            raise
                        self.events(record.name, f"retrying: {exc}")
                for name in list(last):
                    fresh = self.store.rollout(last[name].id)
                    if fresh is not None:
                        last[name] = fresh
                if any(r.active and (until is None or not until(r)) for r in last.values()):
                    self.sleep(self.tick_s)
        finally:
            self.release()
        return last

    def _hold(self, name: str) -> None:
        if name not in self.locks:
            self.locks[name] = self.store.acquire_lock("reconcile", scope=rollout_lock_scope(name))

    def release(self) -> None:
        for name, lock in list(self.locks.items()):
            self.store.release_lock(lock, scope=rollout_lock_scope(name))
            del self.locks[name]


def held_by_other(store: StateStore, name: str) -> str | None:
    """Who drives this rollout now, if a live process does."""
    try:
        lock = store.acquire_lock("probe", scope=rollout_lock_scope(name))
    except LockError as exc:
        return str(exc)
    store.release_lock(lock, scope=rollout_lock_scope(name))
    return None
