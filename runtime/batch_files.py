"""Input files of a batch job: listed by the control plane for the plan, checked by the job.

Both sides use this one module so that the files a plan names are the files a run reads.
Local paths and globs use the file system directly; other URIs (s3://, gs://, ...) go
through fsspec.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
GLOB_CHARS = frozenset("*?[")


class InputError(Exception):
    """The input cannot be listed or read: no match, a bad format, a file that changed."""


@dataclass(frozen=True)
class FileFacts:
    path: str
    size: int
    mtime_ns: int


def list_inputs(patterns: list[str], file_format: str) -> list[FileFacts]:
    """Every file the patterns name, sorted by path; a pattern that matches nothing is an error."""
    found: dict[str, FileFacts] = {}
    for pattern in patterns:
        matched = _expand_uri(pattern) if "://" in pattern and not pattern.startswith("file://") \
            else _expand_local(pattern.removeprefix("file://"), file_format)
        if not matched:
            raise InputError(f"no input file matches {pattern!r}")
        for facts in matched:
            found[facts.path] = facts
    files = [found[p] for p in sorted(found)]
    resolve_format(files, file_format)
    return files


def resolve_format(files: list[FileFacts], file_format: str) -> str:
    """'parquet' or 'csv': as declared, or decided by the extensions (which must agree)."""
    if file_format != "auto":
        return file_format
    formats = {FORMATS.get(os.path.splitext(f.path)[1].lower()) for f in files}
    if None in formats:
        odd = next(f.path for f in files if FORMATS.get(os.path.splitext(f.path)[1].lower()) is None)
        raise InputError(f"cannot tell the format of {odd!r} from its extension; set format: parquet or csv")
    if len(formats) > 1:
        raise InputError("the input mixes parquet and csv files; list one format per deployment")
    return formats.pop()  # type: ignore[return-value]


def facts_of(path: str) -> FileFacts:
    """Size and modification time of one file, now."""
    if "://" in path and not path.startswith("file://"):
        fs, bare = _fs(path)
        return _uri_facts(path, fs.info(bare))
    stat = os.stat(path.removeprefix("file://"))
    return FileFacts(path, stat.st_size, stat.st_mtime_ns)


def _expand_local(pattern: str, file_format: str) -> list[FileFacts]:
    base = pattern
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    elif not GLOB_CHARS & set(pattern):
        return [facts_of(pattern)] if os.path.isfile(pattern) else []
    else:
        base = os.path.dirname(pattern.split("*")[0].split("?")[0].split("[")[0])
    # Names starting with '.' or '_' (and everything under such folders, like Spark's
    # _temporary/ or a writer's .staging/) are never data, as in Spark and pyarrow.
    paths = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)
             and not any(part.startswith((".", "_")) for part in Path(os.path.relpath(p, base or ".")).parts)]
    if file_format == "auto" and pattern.endswith("*"):  # a directory: only the files of known formats
        paths = [p for p in paths if os.path.splitext(p)[1].lower() in FORMATS]
    return [facts_of(p) for p in paths]


@contextmanager
def opened(path: str) -> Iterator[Any]:
    """What pyarrow reads ``path`` from: a local path as it is, any other URI as an fsspec file."""
    if "://" in path and not path.startswith("file://"):
        fs, bare = _fs(path)
        with fs.open(bare, "rb") as handle:  # type: ignore[attr-defined]
            yield handle
    else:
        yield path.removeprefix("file://")


def _fs(uri: str) -> tuple[object, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(uri)  # type: ignore[no-any-return]


def _expand_uri(pattern: str) -> list[FileFacts]:
    fs, bare = _fs(pattern)
    protocol = pattern.split("://", 1)[0]
    infos = fs.glob(bare, detail=True) if GLOB_CHARS & set(bare) else {bare: fs.info(bare)}  # type: ignore[attr-defined]
    return [_uri_facts(f"{protocol}://{name}", info) for name, info in infos.items() if info.get("type") == "file"]


def _uri_facts(path: str, info: dict) -> FileFacts:
    stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
    if hasattr(stamp, "timestamp"):
        stamp = stamp.timestamp()
    elif isinstance(stamp, str):
        from datetime import datetime

        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return FileFacts(path, int(info.get("size") or 0), int(float(stamp) * 1e9))
