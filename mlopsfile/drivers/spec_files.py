"""File-system events on the spec tree and the project file (watchdog), handed to a callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from mlopsfile.config import PROJECT_FILE, STATE_DIR
from mlopsfile.spec.loader import SPEC_SUFFIXES

# Opened and closed-without-writing events are the agent's own reads of the specs:
# reacting to them would reconcile forever.
WRITES = {EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_DELETED, EVENT_TYPE_MOVED, EVENT_TYPE_CLOSED}

OnChange = Callable[[bool], None]  # called with whether the project file changed


class SpecFiles:
    """Watches ``specs`` (a directory, recursively, or one file) and ``root``/mlopsfile.yaml."""

    def __init__(self, specs: Path, root: Path) -> None:
        self.specs = specs.resolve()
        self.project_file = (root / PROJECT_FILE).resolve()
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self, on_change: OnChange) -> None:
        handler = _Handler(self, on_change)
        observer = Observer()
        if self.specs.is_dir():
            observer.schedule(handler, str(self.specs), recursive=True)
        elif self.specs.parent.is_dir():
            observer.schedule(handler, str(self.specs.parent), recursive=False)
        if self.project_file.parent != self.specs and self.project_file.parent.is_dir():
            observer.schedule(handler, str(self.project_file.parent), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def relevant(self, path: Path, is_directory: bool) -> bool | None:
        """None when the event does not concern the specs; else whether it is the project file."""
        if path == self.project_file:
            return True
        inside = path == self.specs or self.specs in path.parents
        if not inside or {STATE_DIR, ".git"} & set(path.parts):  # the agent's own state writes, git's bookkeeping
            return None
        if is_directory or path.suffix in SPEC_SUFFIXES:  # a removed or renamed directory takes its specs along
            return False
        return None


class _Handler(FileSystemEventHandler):
    def __init__(self, files: SpecFiles, on_change: OnChange) -> None:
        self.files = files
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WRITES:
            return
        paths = [event.src_path] + ([event.dest_path] if getattr(event, "dest_path", "") else [])
        for raw in paths:
            kind = self.files.relevant(Path(str(raw)).resolve(), event.is_directory)
            if kind is not None:
                self.on_change(kind)
                return
