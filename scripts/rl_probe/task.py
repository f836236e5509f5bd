"""Position-lookup questions with an annotator's systematic slip, for the ReFT-style learning-effect probe.

A question shows a list of 2-digit numbers and asks for the number at one position: first, second,
third, last or second to last. The verified answer (``meta.final_answer``) is computed from the list.
The demonstration (the assistant reply SFT imitates) was written by an annotator who, on a share of
the "second to last" questions (``slip_rate``), read only "second" and gave the second number — a
systematic, input-dependent slip, as real annotation has. SFT imitates it; an answer-match reward
against ``meta.final_answer`` does not.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

KINDS = {"first": 0, "second": 1, "third": 2, "last": -1, "second to last": -2}
SLIP_KIND = "second to last"


def question(rng: random.Random, kind: str, min_len: int = 4, max_len: int = 7) -> tuple[str, list[int]]:
    """One question text and its list of distinct 2-digit numbers."""
    nums = rng.sample(range(10, 100), rng.randint(min_len, max_len))
    return f"Numbers: {' '.join(map(str, nums))}. Which number is {kind}?", nums


def record(rng: random.Random, kind: str, slip_rate: float, split: str, index: int) -> dict:
    """A canonical conversation: question, the annotator's demonstration, the verified final answer."""
    text, nums = question(rng, kind)
    answer = nums[KINDS[kind]]
    slipped = kind == SLIP_KIND and rng.random() < slip_rate
    shown = nums[1] if slipped else answer  # the slip: "second to last" read as "second"
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": f"#### {shown}"}],
            "meta": {"final_answer": str(answer), "kind": kind, "slipped": slipped},
            "origin": {"file": f"rl_probe/{split}", "line": None, "index": index}}


def make_split(seed: int, n: int, slip_rate: float, split: str) -> list[dict]:
    """``n`` records, the kinds in equal shares (shuffled); slips only where ``slip_rate`` > 0."""
    rng = random.Random(f"{seed}-{split}")
    kinds = [k for i in range(n) for k in [list(KINDS)[i % len(KINDS)]]]
    rng.shuffle(kinds)
    return [record(rng, k, slip_rate, split, i) for i, k in enumerate(kinds)]


def make_data(seed: int, n_train: int = 400, n_dev: int = 200, n_test: int = 500, slip_rate: float = 0.7) -> dict:
    """Train (with slips in its demonstrations), dev (for deciding when SFT has plateaued) and test (held out).

    Dev and test carry verified answers only; their demonstrations are never trained on."""
    return {"train": make_split(seed, n_train, slip_rate, "train"),
            "dev": make_split(seed, n_dev, 0.0, "dev"),
            "test": make_split(seed, n_test, 0.0, "test")}


def write(data: dict, folder: Path) -> None:
    """One JSONL file per split (the canonical record shape sftkit's loader reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, recs in data.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")


if __name__ == "__main__":
    d = make_data(0)
    for r in d["train"][:6]:
        print(r["messages"][0]["content"], "->", r["messages"][1]["content"], r["meta"])
    print(sum(r["meta"]["slipped"] for r in d["train"]), "slipped demonstrations of", len(d["train"]))
