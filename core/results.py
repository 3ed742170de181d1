"""``RUN_DIR/results.jsonl``: one JSON record per cell key, written atomically. The runner is its
only writer; the reports read it (and nothing else of the runner)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from boxbench.core.errors import UserError

RESULTS = "results.jsonl"


class ResultStore:
    """``results.jsonl``: one record per cell key, replaced in place when a cell is re-run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESULTS

    @classmethod
    def existing(cls, run_dir: Path, where: str) -> "ResultStore":
        """The store of a finished or running run; a folder without results.jsonl is a one-line
        error naming ``where`` (the flag or argument that gave the folder)."""
        store = cls(Path(run_dir))
        if not store.path.is_file():
            raise UserError(f"{where}: {str(run_dir)!r} has no {RESULTS}; give a run folder "
                            f"(boxbench run SUITE --out {run_dir})")
        return store

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if line.strip():
                    out.append(json.loads(line))
        return out

    def ok_keys(self) -> set[str]:
        return {r["cell_key"] for r in self.records() if r.get("status") == "ok"}

    def put(self, record: dict[str, Any]) -> None:
        """Add ``record`` (replacing an earlier one with the same cell key) atomically."""
        records = [r for r in self.records() if r.get("cell_key") != record["cell_key"]] + [record]
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
