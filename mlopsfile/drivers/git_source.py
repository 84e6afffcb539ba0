"""Pull mode's source: a local checkout of one branch of a remote repository, through the git CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlopsfile.errors import DriverError

GIT_TIMEOUT_S = 120.0


def display_url(url: str) -> str:
    """The URL without credentials, fit for logs and the audit log."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def checkout_dir(cache: Path, url: str, branch: str) -> Path:
    """One checkout per (repository, branch), so two agents of one project never share a tree."""
    key = hashlib.sha256(f"{url}\n{branch}".encode()).hexdigest()[:12]
    return cache / f"git-{key}"


class GitSource:
    """Clones once, then fetches and resets the working tree to ``origin/<branch>``.

    Every failure is a temporary DriverError: the remote may come back, and the agent
    keeps serving what it last applied meanwhile.
    """

    def __init__(self, url: str, branch: str, directory: Path) -> None:
        self.url = url
        self.branch = branch
        self.directory = directory

    @property
    def label(self) -> str:
        return f"{display_url(self.url)}@{self.branch}"

    def sync(self) -> str:
        """Bring the checkout to the branch's tip; its commit sha."""
        if not (self.directory / ".git").is_dir():
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            self._git("clone", "--quiet", "--branch", self.branch, "--single-branch", "--", self.url,
                      str(self.directory), cwd=self.directory.parent)
        else:
            self._git("fetch", "--quiet", "--prune", "origin",
                      f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}")
            # Local edits in the cache are never wanted: the remote branch is the desired state.
            self._git("reset", "--quiet", "--hard", f"origin/{self.branch}")
            self._git("clean", "--quiet", "-fd")
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=cwd or self.directory, capture_output=True, text=True,
                                    timeout=GIT_TIMEOUT_S, env=_quiet_env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"git {args[0]} of {self.label} failed: {exc}", temporary=True) from exc
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["exit code " + str(result.returncode)])[-1]
            raise DriverError(f"git {args[0]} of {self.label} failed: {detail.replace(self.url, display_url(self.url))}", temporary=True)
        return result.stdout


def _quiet_env() -> dict[str, str]:
    # Never stop to ask for a password: an agent has nobody to answer.
    return os.environ | {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
