"""Shared test helpers: the repo's copy of the real data, and small-file writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
LF = DATA / "llamafactory"
GSM8K = DATA / "gsm8k"


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (objects or raw strings) as JSONL, one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture
def jsonl(tmp_path):
    """Factory: jsonl(rows, name="data.jsonl") -> path of a written JSONL file."""

    def make(rows: list, name: str = "data.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)

    return make
