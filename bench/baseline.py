"""The code of another commit in a scratch git worktree, to serve beside the current code (A/B).

`BENCH_BASELINE=<git ref>` (`make bench NAME=consume BASELINE=<ref>`) checks the commit out with
`git worktree add --detach` under var/bench-baseline/<short sha>, or reuses that worktree when it
is already there at the same commit. Nothing in the main checkout changes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import harness

WORKTREES = harness.ROOT / "var" / "bench-baseline"


def requested_ref() -> str | None:
    """The git ref to compare against (BENCH_BASELINE), or None for a run without one."""
    return os.environ.get("BENCH_BASELINE", "").strip() or None


@dataclass(frozen=True)
class Checkout:
    ref: str
    commit: str
    root: Path


def _git(*args: str, cwd: Path = harness.ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout.strip()


def checkout(ref: str) -> Checkout:
    """The worktree of `ref`'s commit, made when missing; a stale or edited one fails loudly."""
    commit = _git("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    short = _git("rev-parse", "--short", commit)
    root = WORKTREES / short
    if not root.exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        harness.say(f"baseline: git worktree add --detach {root.relative_to(harness.ROOT)} {short}")
        _git("worktree", "add", "--detach", str(root), commit)
    toplevel = Path(_git("rev-parse", "--show-toplevel", cwd=root)).resolve()
    if not (root / ".git").is_file() or toplevel != root.resolve():
        raise SystemExit(f"{root} exists but is not a git worktree: remove it and run again")
    head = _git("rev-parse", "HEAD", cwd=root)
    if head != commit:
        raise SystemExit(f"{root} is at {head}, not at {commit}: remove it and run again")
    edited = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    if edited:
        raise SystemExit(f"{root} has local changes, so it is not {ref} any more:\n{edited}")
    return Checkout(ref=ref, commit=commit, root=root)
