"""An on-disk cache of API requests (lm-evaluation-harness's and DSPy's habit): a re-run of a finished
study asks the server nothing and pays nothing.

One SQLite file (``requests.sqlite`` in ``$BOXBENCH_REQUEST_CACHE_DIR``, default boxbench's cache folder:
``$BOXBENCH_CACHE`` or ``~/.cache/boxbench``, beside the dequantised weights), in WAL mode
with a busy timeout, so several cell processes and Ray workers on one machine read and write it at
once. A response is stored under the sha256 of (the model's identity, the endpoint, the request's
parameters): the identity is the base URL, the model name and what the server reported of the model
when it was first asked (``/v1/models``), so another model behind the same URL and name gets its own
entries only if it reports itself differently — clear the cache (or ``--no-cache``) when you swap one
silently. Only deterministic requests are cached: greedy (temperature 0) or sampled with a seed (the
seed and every sampling parameter are in the key).

``BOXBENCH_REQUEST_CACHE_BUSY_S`` (default 15) is how long a write waits for another writer before the
cache counts as locked. ``settings.cache`` (default on) / ``boxbench run --no-cache`` turn it off for a run: the cell's context
(``backends.context``) carries it, begun in its own process before any model loads. ``BOXBENCH_REQUEST_CACHE=0`` in the environment
turns it off for everything (the test suite does, so that tests which count requests reach the server).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from boxbench.backends import context, weights

def allowed() -> bool:
    """Whether the environment permits the cache at all (``BOXBENCH_REQUEST_CACHE=0`` forbids it)."""
    return os.environ.get("BOXBENCH_REQUEST_CACHE", "1") != "0"


def cache_dir() -> Path:
    return Path(os.environ.get("BOXBENCH_REQUEST_CACHE_DIR") or weights.cache_dir())


def request_key(identity: dict[str, Any], endpoint: str, params: dict[str, Any]) -> str:
    """The key of one request: identity, endpoint and parameters, canonical JSON, sha256."""
    text = json.dumps({"identity": identity, "endpoint": endpoint, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cacheable(params: dict[str, Any]) -> bool:
    """Deterministic requests only: greedy, or sampled with a seed."""
    return not params.get("temperature") or params.get("seed") is not None


# a writer holding the file longer than this is a locked cache, not a busy one (then the cell goes on without it)
BUSY_TIMEOUT_S = float(os.environ.get("BOXBENCH_REQUEST_CACHE_BUSY_S", "15"))


class RequestCache:
    """key → JSON value, shared by processes through SQLite (one connection per process, locked for
    threads). A cache file that cannot be opened, read or written (locked past ``BUSY_TIMEOUT_S``,
    read-only, full, damaged) turns the cache off for the rest of the cell, with the reason in the
    cell's context (its record's ``request_cache_error``; the run warns once): the cell goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except (sqlite3.Error, OSError) as e:
            self._off(e)

    def _off(self, e: BaseException) -> None:
        self._db = None
        context.current().cache_error = context.current().cache_error or f"{self.path}: {type(e).__name__}: {e}"

    def get(self, key: str) -> Any | None:
        if self._db is None:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as e:
            self._off(e)
            return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.Error as e:
            self._off(e)


_OPEN: dict[str, RequestCache] = {}


def shared() -> RequestCache | None:
    """This process's cache (None when caching is off); opened on first use, after any fork."""
    if not (context.current().cache and allowed()):
        return None
    path = cache_dir() / "requests.sqlite"
    key = f"{os.getpid()}:{path}"
    if key not in _OPEN:
        _OPEN[key] = RequestCache(path)
    return _OPEN[key]
