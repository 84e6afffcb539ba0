"""The entrypoint of a batch deployment's Ray Job: read, score, write, publish.

    python -m runtime.batch_job <base64 of zlib-compressed JSON config>

It reads exactly the files the plan listed (failing if one changed since), checks them
against the model signature before scoring anything, scores with ``map_batches`` on a
pool of actors that each hold the MLflow pyfunc model and write what they score as parquet
parts into a staging directory (runtime/batch_parts). Parquet is read in pieces of whole
row groups planned from the footers (runtime/parquet_pieces), inside the replicas when
there are enough pieces for all of them. Only a complete run is published:

    <output>/runs/<run id>/part-*.parquet + _manifest.json   (renamed in whole from .staging/)
    <output>/current -> runs/<run id>                          (one atomic symlink swap)

so a job killed half-way leaves nothing where readers look, and every published
directory holds the output of one model version over one input. A canary first scores a
sample with both versions and stops unless its gates pass; a shadow candidate's
predictions are published the same way under ``<output>/shadow/`` (see batch_trials). A run that fails on
its own (bad input, missing column, model error) prints one ``mlopsfile: run failed:``
line and exits with code 3.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
import traceback
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runtime.batch_files import FileFacts, InputError, facts_of, opened, resolve_format
from runtime.batch_parts import commit_parts, delivered_parts, merge_small_parts, parts_in, write_part
from runtime.batch_slices import score_in_slices
from runtime.batch_trials import CANDIDATE_COLUMN, REFERENCE_COLUMN, Agreement, PairScorer
from runtime.model_loading import load_pyfunc
from runtime.parquet_pieces import Footer, block_rows, plan_pieces, read_footer

FAILURE_EXIT_CODE = 3
KEEP_RUNS = 2  # the published run and the one before it
MANIFEST = "_manifest.json"
PIECES_PER_REPLICA_TO_FUSE = 2  # with fewer read tasks, some replicas would sit idle while others read


class RunFailure(Exception):
    """The run cannot succeed as planned: say why in one line."""


def main(argv: list[str]) -> int:
    config = json.loads(zlib.decompress(base64.b64decode(argv[1])))
    try:
        manifest = run(config)
    except (RunFailure, InputError) as exc:
        print(f"mlopsfile: run failed: {exc}", file=sys.stderr, flush=True)
        return FAILURE_EXIT_CODE
    except Exception as exc:
        traceback.print_exc()  # for `mlopsfile logs`; the line below is what status shows
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"mlopsfile: run failed: {type(exc).__name__}: {first}", file=sys.stderr, flush=True)
        return FAILURE_EXIT_CODE
    print(f"mlopsfile: published {manifest['rows']} rows of model version {manifest['model_version']} "
          f"to {manifest['path']} in {manifest['timings']['total_s']:.1f} s", flush=True)
    return 0


def run(config: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    started_at = _now()
    for key in ("tracking_uri", "registry_uri"):
        if config.get(key):
            os.environ[f"MLFLOW_{key.upper()}"] = config[key]
    files = [FileFacts(f["path"], f["size"], f["mtime_ns"]) for f in config["input_files"]]
    _check_unchanged(files)
    file_format = resolve_format(files, config["format"])
    features = list(config["features"])
    footers = _check_columns(files, file_format, [*features, *config["columns"]], features)
    checked = time.monotonic()
    output = Path(config["output"])
    staging = output / ".staging" / config["run_id"]
    _clear_staging(output)
    staging.mkdir(parents=True)
    # Only what the model and the output need: a wide input costs no more to read than its used columns.
    columns = list(dict.fromkeys([*features, *config["columns"]])) if features else None
    dataset, inside = _read([f.path for f in files], footers, config, columns)
    replicas = _replicas(config, inside)
    trials: dict[str, Any] = {}
    if config.get("canary"):
        trials["canary"] = _canary(config, dataset, features, replicas)
    delivered = _score(config, dataset, features, staging, replicas)
    scored = time.monotonic()
    side = output / ".staging" / f"{config['run_id']}-shadow"
    if config.get("shadow"):
        trials["shadow"] = {**_split_shadow(staging, side, config["prediction_column"]),
                            "model": config["shadow"]["model"], "model_version": config["shadow"]["model_version"],
                            "path": str(output / "shadow" / "runs" / config["run_id"])}
    rows, schema, parts = _describe(staging)
    if rows != delivered:
        raise RuntimeError(f"the output parts hold {rows} rows, the replicas scored {delivered}")
    manifest = {
        **config["manifest"], **trials, "run_id": config["run_id"], "rows": rows, "schema": schema, "files": parts,
        "input_files": config["input_files"], "started_at": started_at, "finished_at": _now(),
        "path": str(output / "runs" / config["run_id"]),
        "timings": {"check_s": checked - started, "score_and_write_s": scored - checked,
                    "total_s": time.monotonic() - started},
    }
    if config.get("shadow"):
        side_manifest = {**manifest, "model_uri": config["shadow"]["model_uri"],
                         "model_version": config["shadow"]["model_version"], "path": trials["shadow"]["path"]}
        (side / MANIFEST).write_text(json.dumps(side_manifest, indent=2, sort_keys=True))
        _publish(output / "shadow", side, config["run_id"])
        print(f"mlopsfile: shadow {config['shadow']['model']} version {config['shadow']['model_version']}: "
              f"agreement {trials['shadow']['agreement']:.4f} over {trials['shadow']['rows']} rows", flush=True)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _publish(output, staging, config["run_id"])
    return manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_unchanged(files: list[FileFacts]) -> None:
    for planned in files:
        try:
            now = facts_of(planned.path)
        except OSError as exc:
            raise RunFailure(f"input file {planned.path} is gone since the plan: {exc}") from exc
        if (now.size, now.mtime_ns) != (planned.size, planned.mtime_ns):
            raise RunFailure(f"input file {planned.path} changed since the plan was made; plan again")


def _check_columns(files: list[FileFacts], file_format: str, needed: list[str],
                   features: list[str]) -> list[Footer] | None:
    """Read each file's schema (parquet footer, CSV header) before any scoring starts; the parquet
    footers, which also plan the reads, are returned (None for CSV)."""
    import pyarrow.csv as pacsv

    footers: list[Footer] = []
    for facts in files:
        try:
            if file_format == "parquet":
                footers.append(read_footer(facts.path))
                names = footers[-1].names
            else:
                with opened(facts.path) as source, pacsv.open_csv(source) as reader:
                    names = reader.schema.names
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunFailure(f"input file {facts.path} is not readable {file_format}: {detail}") from exc
        missing = [c for c in needed if c not in names]
        if missing:
            wants = f" (the model signature needs: {', '.join(features)})" if features else ""
            raise RunFailure(f"input file {facts.path} has no column {', '.join(repr(c) for c in missing)}{wants}")
    return footers if file_format == "parquet" else None


class Scorer:
    """One model replica: holds the pyfunc model, scores pandas blocks, ``batch_size`` rows per call,
    and writes each scored block as a part into ``staging``."""

    def __init__(self, model_uri: str, env: dict[str, str], features: list[str], keep: list[str],
                 prediction_column: str, batch_size: int, staging: str) -> None:
        os.environ.update(env)
        started = time.monotonic()
        self.model = load_pyfunc(model_uri)
        print(f"mlopsfile: model replica (pid {os.getpid()}) loaded the model in {time.monotonic() - started:.1f} s",
              file=sys.stderr, flush=True)
        self.features = features
        self.keep = keep
        self.prediction_column = prediction_column
        self.batch_size = batch_size
        self.staging = staging

    def __call__(self, block: Any) -> Any:
        return write_part(score_in_slices(block, self.batch_size, self._score), self.staging)

    def _score(self, batch: Any) -> Any:
        import numpy as np
        import pandas as pd

        predictions = self.model.predict(batch[self.features] if self.features else batch)
        out = batch[self.keep].reset_index(drop=True) if self.keep else pd.DataFrame(index=range(len(batch)))
        if isinstance(predictions, pd.DataFrame):
            if len(predictions.columns) == 1:
                out[self.prediction_column] = predictions.iloc[:, 0].to_numpy()
            else:
                for column in predictions.columns:
                    out[f"{self.prediction_column}_{column}"] = predictions[column].to_numpy()
            return out
        values = np.asarray(predictions.to_numpy() if isinstance(predictions, pd.Series) else predictions)
        out[self.prediction_column] = list(values) if values.ndim > 1 else values
        return out


def _read(paths: list[str], footers: list[Footer] | None, config: dict[str, Any],
          columns: list[str] | None) -> tuple[Any, bool]:
    """The input as a Ray Data dataset, and whether its reads run inside the model replicas.

    They do when there are at least ``PIECES_PER_REPLICA_TO_FUSE`` read tasks per replica: a
    piece's rows then go straight to the model, with no read tasks beside the replicas, no hop
    through the object store, and a handful of large tasks for the driver to schedule instead of
    hundreds of small ones, whose scheduling and stats took a large share of a small machine's CPU
    away from the model. With fewer, separate read tasks cut the input into blocks that all
    replicas share. Parquet is read as planned from the footers (parquet_pieces); CSV, a file per task.
    """
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    concurrency = int(config["concurrency"])
    if footers is not None:
        from runtime.parquet_datasource import ParquetPieces

        pieces = plan_pieces(footers, concurrency)
        rows = block_rows(pieces, concurrency, int(config["batch_size"]), context.target_max_block_size)
        reservation, inside = _read_reservation(len(pieces), config)
        return ray.data.read_datasource(ParquetPieces(pieces, columns, rows), override_num_blocks=len(pieces),
                                        **reservation), inside
    # Ray 2.60's default file reader lists files in a 1-CPU task (tens of seconds on 2 cores)
    # and packs the input into a few large blocks, leaving replicas idle; the classic one reads per file.
    context.use_datasource_v2 = False
    reservation, inside = _read_reservation(len(paths), config)
    options = {**reservation, "override_num_blocks": len(paths)} if inside else reservation
    return ray.data.read_csv(paths, **options), inside


def _read_reservation(tasks: int, config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """What each of ``tasks`` read tasks reserves, and whether the reads run inside the replicas."""
    if tasks >= PIECES_PER_REPLICA_TO_FUSE * int(config["concurrency"]):
        return _reservation(config), True  # equal reservations let Ray Data fuse the reads into the replicas
    return {"num_cpus": 0.25}, False  # separate: I/O, a quarter CPU


def _reservation(config: dict[str, Any]) -> dict[str, Any]:
    """What each model replica reserves on the cluster."""
    remote: dict[str, Any] = {"num_cpus": config["num_cpus"]}
    if config.get("memory"):
        remote["memory"] = config["memory"]
    return remote


def _replicas(config: dict[str, Any], reads_inside: bool) -> dict[str, Any]:
    """map_batches arguments for the model replicas: whole blocks to a pool holding the model.

    ``batch_size`` is applied by the replica itself (batch_slices), so that Ray Data may fuse the
    read into the replicas. When it does, each task is a whole piece of input: one at a time per
    replica, so that a replica that is done early takes the next piece instead of one queued behind a
    slower one.
    """
    import ray

    in_flight = {"max_tasks_in_flight_per_actor": 1} if reads_inside else {}
    return {"batch_size": None, "batch_format": "pandas",
            "compute": ray.data.ActorPoolStrategy(size=config["concurrency"], **in_flight), **_reservation(config)}


def _location(config: dict[str, Any], model_uri: str) -> str:
    """Where the control plane found the pinned model's artifacts (loading skips the registry)."""
    return str(config.get("model_locations", {}).get(model_uri, model_uri))


def _env(config: dict[str, Any]) -> dict[str, str]:
    return {f"MLFLOW_{k.upper()}": config[k] for k in ("tracking_uri", "registry_uri") if config.get(k)}


def _canary(config: dict[str, Any], dataset: Any, features: list[str], replicas: dict[str, Any]) -> dict[str, Any]:
    """Score a sample with the published and the new version; raise unless the gates pass."""
    canary = config["canary"]
    sample = dataset.random_sample(canary["sample"], seed=0).map_batches(
        PairScorer, fn_constructor_kwargs={"first_uri": _location(config, canary["previous_model_uri"]),
                                           "second_uri": _location(config, config["model_uri"]),
                                           "env": _env(config), "features": features, "keep": [],
                                           "prediction_column": None, "batch_size": config["batch_size"],
                                           "staging": None},
        **replicas)
    agreement = Agreement()
    for batch in sample.iter_batches(batch_format="pandas", batch_size=None):
        agreement.add(batch[REFERENCE_COLUMN].to_numpy(), batch[CANDIDATE_COLUMN].to_numpy())
    report = {**agreement.report(), "previous_model_uri": canary["previous_model_uri"], "sample": canary["sample"]}
    print(f"mlopsfile: canary over {agreement.rows} sampled rows: agreement {agreement.agreement:.4f}, "
          f"mean shift {report['mean_shift_sd']}", flush=True)
    failures = agreement.failed_gates(canary.get("min_agreement"), canary.get("max_mean_shift"))
    if not agreement.rows:
        failures.append("the sample is empty")
    if failures:
        raise RunFailure(f"canary gate failed on {agreement.rows} sampled rows: {'; '.join(failures)}; "
                         "the full run was not started and the published output stays")
    return report


def _score(config: dict[str, Any], dataset: Any, features: list[str], staging: Path,
           replicas: dict[str, Any]) -> int:
    """Score the input into parts in ``staging``; the rows scored."""
    keep, column = config["columns"], config["prediction_column"]
    if config.get("shadow"):
        scored = dataset.map_batches(PairScorer, fn_constructor_kwargs={
            "first_uri": _location(config, config["model_uri"]),
            "second_uri": _location(config, config["shadow"]["model_uri"]), "env": _env(config),
            "features": features, "keep": keep, "prediction_column": column, "batch_size": config["batch_size"],
            "staging": str(staging)}, **replicas)
    else:
        scored = dataset.map_batches(Scorer, fn_constructor_kwargs={
            "model_uri": _location(config, config["model_uri"]), "env": _env(config), "features": features, "keep": keep,
            "prediction_column": column, "batch_size": config["batch_size"], "staging": str(staging)}, **replicas)
    parts, rows = delivered_parts(scored)
    commit_parts(staging, parts)
    merge_small_parts(staging)
    return rows


def _split_shadow(staging: Path, side: Path, prediction_column: str) -> dict[str, Any]:
    """Part by part: the published columns stay, the candidate's go to the side output."""
    import pyarrow.parquet as pq

    side.mkdir(parents=True)
    agreement = Agreement()
    for part in parts_in(staging):
        table = pq.read_table(part)
        agreement.add(table[prediction_column].to_numpy(), table[CANDIDATE_COLUMN].to_numpy())
        candidate = table.drop_columns([prediction_column]).rename_columns(
            [prediction_column if n == CANDIDATE_COLUMN else n for n in table.column_names if n != prediction_column])
        pq.write_table(candidate, side / part.name)
        pq.write_table(table.drop_columns([CANDIDATE_COLUMN]), part)
    return agreement.report()


def _describe(staging: Path) -> tuple[int, list[dict[str, str]], list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    parts = parts_in(staging)
    rows = sum(pq.read_metadata(p).num_rows for p in parts)
    schema = [{"name": f.name, "type": str(f.type)} for f in pq.read_schema(parts[0])] if parts else []
    return rows, schema, [{"name": p.name, "bytes": p.stat().st_size} for p in parts]


def _clear_staging(output: Path) -> None:
    """Staging left by killed runs is never published: remove it."""
    shutil.rmtree(output / ".staging", ignore_errors=True)


def _publish(output: Path, staging: Path, run_id: str) -> None:
    runs = output / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    final = runs / run_id
    os.rename(staging, final)  # complete, or not there at all
    link = output / f".current-{run_id}"
    os.symlink(os.path.join("runs", run_id), link)
    os.replace(link, output / "current")  # readers switch in one step
    kept = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)[:KEEP_RUNS]
    for old in runs.iterdir():
        if old not in kept and old != final:
            shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    exit_code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is published or reported by now. Ray's shutdown and the interpreter's teardown took
    # another 1.5-2 s before the job was seen to end; the cluster cleans up after a driver that exits.
    os._exit(exit_code)
