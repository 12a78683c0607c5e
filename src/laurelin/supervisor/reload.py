# laurelin.supervisor.reload — which file changes restart the server under --reload.
#
# `watch_changes()` yields the set of changed paths each time watched files change: through
# watchfiles when it is installed (inotify, no polling), else by comparing modification times
# every half second. What is watched: files under --reload-dir (default: the current directory)
# matching a --reload-include glob (default *.py) and no --reload-exclude glob; hidden
# directories, __pycache__, virtual environments and site-packages never are.
from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from laurelin.config import Config

POLL_SECONDS = 0.5
_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", ".venv", "venv", ".tox", ".git"}


class ReloadFilter:
    """Whether a path is one whose change restarts the server."""

    def __init__(self, config: Config) -> None:
        self.dirs = [Path(d).resolve() for d in (config.reload_dirs or (".",))]
        self.includes = list(config.reload_includes) or ["*.py"]
        self.excludes = list(config.reload_excludes)

    def wanted(self, path: str) -> bool:
        """True for a file under a watched directory that the globs select."""
        p = Path(path)
        for root in self.dirs:
            try:
                parts = p.resolve().relative_to(root).parts
            except ValueError:
                continue
            if any(part in _SKIPPED_DIRS or part.startswith(".") for part in parts[:-1]):
                return False
            name = parts[-1] if parts else p.name
            rel = "/".join(parts)
            if any(_match(name, rel, glob) for glob in self.excludes):
                return False
            return any(_match(name, rel, glob) for glob in self.includes)
        return False

    def files(self) -> Iterable[str]:
        """Every watched file now (for polling)."""
        for root in self.dirs:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS and d[0] != "."]
                for filename in filenames:
                    path = os.path.join(dirpath, filename)
                    if self.wanted(path):
                        yield path


def _match(name: str, rel: str, glob: str) -> bool:
    return fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(rel, glob)


async def watch_changes(config: Config) -> AsyncIterator[set[str]]:
    """Each batch of changed watched files, for as long as the caller iterates."""
    watched = ReloadFilter(config)
    try:
        from watchfiles import awatch
    except ImportError:
        async for changed in _poll(watched):
            yield changed
        return
    dirs = [str(d) for d in watched.dirs]
    async for changes in awatch(*dirs, watch_filter=lambda _c, p: watched.wanted(p), step=100):
        yield {path for _change, path in changes}


async def _poll(watched: ReloadFilter) -> AsyncIterator[set[str]]:
    seen = _mtimes(watched)
    while True:
        await asyncio.sleep(POLL_SECONDS)
        now = _mtimes(watched)
        changed = {p for p in now.keys() | seen.keys() if now.get(p) != seen.get(p)}
        seen = now
        if changed:
            yield changed


def _mtimes(watched: ReloadFilter) -> dict[str, int]:
    result = {}
    for path in watched.files():
        try:
            result[path] = os.stat(path).st_mtime_ns
        except OSError:
            continue
    return result
