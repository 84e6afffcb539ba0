"""mlopsfile.lock: the model versions and artifact digests plan and apply use, committed with the specs.

The file is YAML written in one stable order (models by name, fields in declaration
order) so that re-locking an unchanged registry rewrites it byte for byte and a review
diff shows only what moved.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from mlopsfile.errors import MlopsfileError, SourcePosition, SpecError
from mlopsfile.spec.documents import _to_spec_error
from mlopsfile.spec.yaml_source import read_yaml_documents
from mlopsfile.values import ResolvedModel, Value

LOCK_FILE = "mlopsfile.lock"
LOCK_VERSION = 1

HEADER = (
    "# mlopsfile.lock: the model versions `mlopsfile plan` and `apply` use. Commit it.\n"
    "# Written by `mlopsfile lock`; `mlopsfile lock --update NAME` moves one model.\n"
)


class LockFileError(MlopsfileError):
    """mlopsfile.lock cannot be read: one line naming file:line:column."""


class LockedModel(Value):
    """One Model document pinned to a registry version."""

    uri: str = Field(description="The Model's spec.uri when it was locked.")
    alias: str | None = Field(default=None, description="The alias the version was resolved from, if any.")
    version: str = Field(description="The pinned registry version (the run id's first characters for runs:/ URIs).")
    pinned_uri: str = Field(description="The URI naming exactly this version: what plan and apply use.")
    digest: str = Field(description="sha256 over the model's artifact files when it was locked.")
    resolved_at: str = Field(description="When the version was resolved (ISO 8601, UTC).")

    @classmethod
    def of(cls, model: ResolvedModel, resolved_at: str) -> LockedModel:
        return cls(uri=model.uri, alias=model.alias, version=model.version, pinned_uri=model.pinned_uri,
                   digest=model.digest, resolved_at=resolved_at)

    def same_pin(self, other: LockedModel) -> bool:
        """Whether two entries pin the same thing (when they were resolved aside)."""
        return self.model_dump(exclude={"resolved_at"}) == other.model_dump(exclude={"resolved_at"})


class LockFile(Value):
    """The whole lock: a format version and the pinned models by Model name."""

    lock_version: int = Field(default=LOCK_VERSION, description=f"Format of the lock file; always {LOCK_VERSION}.")
    models: dict[str, LockedModel] = Field(default_factory=dict, description="Pinned models by Model name.")


def dump_lock(lock: LockFile) -> str:
    data = {
        "lock_version": lock.lock_version,
        "models": {name: lock.models[name].model_dump(exclude_none=True) for name in sorted(lock.models)},
    }
    return HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)


def parse_lock(text: str, file: str) -> LockFile:
    """Raise LockFileError at file:line:column for bad YAML, unknown fields or a newer format."""
    documents, errors = read_yaml_documents(text, file)
    if not errors and len(documents) != 1:
        errors = [SpecError(f"expected one YAML document, found {len(documents)}", SourcePosition(file, 1, 1))]
    if errors:
        raise _error(errors)
    raw = documents[0]
    if not isinstance(raw.data, dict):
        raise _error([SpecError("expected a mapping with lock_version and models", raw.positions.value(()))])
    if raw.data.get("lock_version", LOCK_VERSION) != LOCK_VERSION:
        raise _error([SpecError(f"unsupported lock_version; this mlopsfile reads version {LOCK_VERSION}",
                                raw.positions.value(("lock_version",)), "lock_version")])
    try:
        return LockFile.model_validate(raw.data)
    except ValidationError as exc:
        raise _error([_to_spec_error(item, raw.data, raw.positions, LockFile) for item in exc.errors()]) from None


def _error(errors: list[SpecError]) -> LockFileError:
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return LockFileError(errors[0].line() + more)


def read_lock(path: Path, shown: str = LOCK_FILE) -> LockFile | None:
    """The lock at ``path``; None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockFileError(f"{shown}: cannot read: {exc}") from exc
    return parse_lock(text, shown)


def write_lock(path: Path, lock: LockFile) -> None:
    """Replace the file in one step, so a reader never sees half a lock."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dump_lock(lock), encoding="utf-8")
    temporary.replace(path)
