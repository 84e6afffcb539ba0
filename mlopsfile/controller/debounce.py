"""Coalesce a burst of file events into one reconcile.

An editor saving a file, or ``git checkout`` rewriting a tree, fires many events within
a fraction of a second; planning on the first would read a half-written tree. The
debouncer fires once the events have been quiet for ``quiet_s``, and notes whether the
project file was among them (its settings must then be read again).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Burst:
    """What a burst of events touched."""

    project_file: bool


class Debouncer:
    """Thread-safe: a file watcher's thread touches it, the agent's loop polls it."""

    def __init__(self, quiet_s: float = 0.7) -> None:
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._last: float | None = None
        self._project_file = False

    def touch(self, now: float, project_file: bool = False) -> None:
        with self._lock:
            self._last = now
            self._project_file = self._project_file or project_file

    def deadline(self) -> float | None:
        """When the pending burst fires if nothing else arrives; None when nothing is pending."""
        with self._lock:
            return None if self._last is None else self._last + self.quiet_s

    def fire(self, now: float) -> Burst | None:
        """The burst, once it has been quiet long enough (then it is consumed); else None."""
        with self._lock:
            if self._last is None or now - self._last < self.quiet_s:
                return None
            burst = Burst(project_file=self._project_file)
            self._last, self._project_file = None, False
            return burst
