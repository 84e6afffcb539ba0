"""The runtime/ package as jobs and Serve applications get it: staged once, named by its digest."""

from __future__ import annotations

from pathlib import Path

from mlopsfile.config import Settings
from mlopsfile.drivers.runtime_package import runtime_digest, runtime_source, runtime_working_dir


def _settings(root: Path, head_on_this_machine: bool) -> Settings:
    """Settings of a project whose Ray head mlopsfile runs here (no address), or another cluster's."""
    return Settings(root=root, project="demo", specs=root / "specs",
                    ray_address=None if head_on_this_machine else "10.0.0.5:6379", ray_dashboard_url=None,
                    http_host="127.0.0.1", http_port=8000, ray_num_cpus=None, tracking_uri="sqlite:///x.db",
                    registry_uri=None, state_url="sqlite:///state.db")


def test_the_local_head_runs_the_staged_copy_in_place(tmp_path: Path) -> None:
    settings = _settings(tmp_path, head_on_this_machine=True)
    working_dir = runtime_working_dir(settings)

    assert working_dir.startswith("local:///")
    staged = Path(working_dir.removeprefix("local://"))
    assert staged == (settings.state_dir / "runtime" / runtime_digest()).resolve()
    shipped = sorted(p.relative_to(staged / "runtime").as_posix() for p in (staged / "runtime").rglob("*.py"))
    assert "batch_job.py" in shipped and "serve_app.py" in shipped
    assert not any(name.startswith("edge/") for name in shipped), "edge code runs in images, never on Ray"
    assert (staged / "runtime" / "batch_job.py").read_bytes() == (runtime_source() / "batch_job.py").read_bytes()


def test_another_cluster_gets_a_path_that_ray_uploads(tmp_path: Path) -> None:
    working_dir = runtime_working_dir(_settings(tmp_path, head_on_this_machine=False))

    assert Path(working_dir).is_absolute() and Path(working_dir, "runtime", "batch_job.py").is_file()


def test_staging_twice_keeps_the_first_copy(tmp_path: Path) -> None:
    """A job may be running from the staged copy: staging again must not replace or rewrite it."""
    first = Path(runtime_working_dir(_settings(tmp_path, head_on_this_machine=False)))
    marker = first / "runtime" / "__pycache__" / "written-by-a-running-job"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("x")

    second = Path(runtime_working_dir(_settings(tmp_path, head_on_this_machine=False)))

    assert second == first and marker.is_file()
