"""Packing: best-fit decreasing bins, and a packed batch has the same loss as the same samples unpacked."""

from __future__ import annotations

import random

import torch
from transformers import AutoModelForCausalLM

from sftkit.tokenize.packing import ATTENTION, PackedCollator, PaddedCollator, pack, packed_rows
from sftkit.tokenize.render import IGNORE


def _rows(n: int, seed: int = 0, vocab: int = 8000) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(5, 60)
        ids = [rng.randrange(10, vocab) for _ in range(length)]
        cut = rng.randint(1, length - 1)
        rows.append({"input_ids": ids, "labels": [IGNORE] * cut + ids[cut:]})
    return rows


def test_best_fit_decreasing_fills_bins():
    rows = _rows(200)
    bins = pack(rows, 128)
    sizes = [sum(len(r["input_ids"]) for r in b) for b in bins]
    assert all(s <= 128 for s in sizes)
    assert sorted(id(r) for b in bins for r in b) == sorted(id(r) for r in rows)  # every row exactly once
    lower_bound = -(-sum(len(r["input_ids"]) for r in rows) // 128)
    assert len(bins) <= lower_bound + 2


def test_packed_loss_equals_unpacked(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rows = _rows(12, seed=1)
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        unpacked = model(**PaddedCollator(0)(rows)).loss.item()
        model.set_attn_implementation(ATTENTION)
        batch = PackedCollator()(packed_rows(rows, 128))
        packed = model(**batch).loss.item()
    assert batch["input_ids"].shape[0] == 1 and len(batch["cu_seq_lens_q"]) == 13
    assert abs(packed - unpacked) <= 1e-5, (packed, unpacked)


def test_position_ids_restart_per_sample():
    rows = _rows(3, seed=2)
    batch = PackedCollator()(packed_rows(rows, 1000))
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0]
    assert len(starts) == 3 and batch["cu_seq_lens_q"].tolist()[:-1] == starts
