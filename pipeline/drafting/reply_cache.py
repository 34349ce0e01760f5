"""Replies cached by the content hash of their request, so a rerun sends no request that already succeeded.

SQLite (one file per output folder) gives atomic inserts and survives a killed run; the key covers the
model, every message (image bytes included), the response format and the sampling settings.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


def request_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ReplyCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                         "finish_reason TEXT, usage TEXT)")
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> tuple[str, str | None, dict] | None:
        with self._lock:
            row = self._db.execute("SELECT text, finish_reason, usage FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0], row[1], json.loads(row[2] or "{}")

    def put(self, key: str, text: str, finish_reason: str | None, usage: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
                             (key, text, finish_reason, json.dumps(usage)))

    def close(self) -> None:
        self._db.close()
