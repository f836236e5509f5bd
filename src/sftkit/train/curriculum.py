"""Curr-ReFT's curriculum: the order in which an RL stage meets its questions, easy before hard.

``order(records, curriculum)`` sorts the training records once, before training; the recipe then turns
trl's shuffling off (``GRPOConfig.shuffle_dataset=False``), so its ``RepeatSampler`` hands out the
questions in exactly this order, ``batch_size`` questions per step (each repeated ``num_generations``
times). A last group smaller than a step's questions is dropped by trl, as in every epoch; a second
epoch starts again from the easiest questions.

- ``by: difficulty``: ascending ``meta[field]`` (a number). A record without it, or with a value that
  is not a number, is an error naming the record (a curriculum with silently misplaced questions is not
  the curriculum that was asked for).
- ``by: format``: ``meta[field]`` in the order of ``formats`` (e.g. yes/no, then multiple choice, then
  open answers); records of other formats, or with none, come last.

The sort is stable: within one level the records keep the data engine's (seeded, shuffled) order.
"""

from __future__ import annotations

import numbers

from sftkit.config_rl import CurriculumConfig
from sftkit.errors import SftkitError


def _where(record: dict) -> str:
    o = record.get("origin") or {}
    if not o:
        return "a record"
    return f"{o.get('file')}:{o['line']}" if o.get("line") else f"{o.get('file')}[{o.get('index')}]"


def _difficulty(record: dict, field: str) -> float | None:
    value = (record.get("meta") or {}).get(field)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def order(records: list[dict], curriculum: CurriculumConfig) -> list[dict]:
    """The records in training order (unchanged for ``by: none``).

    Raises:
        SftkitError: ``by: difficulty`` and a record lacks a numeric ``meta[field]`` (the first is named).
    """
    if curriculum.by == "none":
        return list(records)
    field = curriculum.field
    if curriculum.by == "difficulty":
        bad = [r for r in records if _difficulty(r, field) is None]
        if bad:
            got = (bad[0].get("meta") or {}).get(field)
            raise SftkitError(f"rl.curriculum by difficulty: {_where(bad[0])} has meta.{field} = {got!r}, not a "
                              f"number ({len(bad)} of {len(records)} records); give every record a numeric "
                              f"meta.{field}, or set rl.curriculum.by: none")
        return sorted(records, key=lambda r: _difficulty(r, field))
    rank = {name: i for i, name in enumerate(curriculum.formats)}
    return sorted(records, key=lambda r: rank.get((r.get("meta") or {}).get(field), len(rank)))


def levels(records: list[dict], curriculum: CurriculumConfig) -> dict[str, int]:
    """How many records each curriculum level holds, in training order (for the data report)."""
    if curriculum.by == "none":
        return {}
    out: dict[str, int] = {}
    for r in records:
        value = (r.get("meta") or {}).get(curriculum.field)
        if curriculum.by == "format" and value not in curriculum.formats:
            value = "other"
        out[str(value)] = out.get(str(value), 0) + 1
    return out
