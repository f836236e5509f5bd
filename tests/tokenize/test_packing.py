"""Packing: best-fit decreasing bins; packed samples are isolated (a sample's tokens never change another
sample's logits) and a packed batch has the same loss and gradients as the same samples unpacked."""

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


def _model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def test_packed_samples_are_isolated(tiny_model_dir):
    """Changing every token of sample 1 leaves the logits of samples 0 and 2 exactly as they were."""
    model = _model(tiny_model_dir).eval()
    model.set_attn_implementation(ATTENTION)
    rows = _rows(3, seed=3)
    bounds = [0]
    for r in rows:
        bounds.append(bounds[-1] + len(r["input_ids"]))
    rng = random.Random(4)
    changed = [dict(r) for r in rows]
    changed[1] = {**rows[1], "input_ids": [rng.randrange(10, 8000) for _ in rows[1]["input_ids"]]}
    collate = PackedCollator()
    one = {"input_ids": [t for r in rows for t in r["input_ids"]], "labels": [t for r in rows for t in r["labels"]],
           "lengths": [len(r["input_ids"]) for r in rows]}
    two = {**one, "input_ids": [t for r in changed for t in r["input_ids"]]}
    with torch.no_grad():
        a, b = model(**collate([one])).logits[0], model(**collate([two])).logits[0]
    for k in (0, 2):
        s, e = bounds[k], bounds[k + 1]
        assert torch.allclose(a[s:e], b[s:e], rtol=0, atol=1e-6), k
    assert not torch.allclose(a[bounds[1]:bounds[2]], b[bounds[1]:bounds[2]])  # the perturbation did reach sample 1


def test_packed_gradients_equal_unpacked(tiny_model_dir):
    """Per-parameter gradients of one packed row equal those of the same samples in a padded batch."""
    rows = _rows(3, seed=5)
    packed = packed_rows(rows, 1000)
    assert len(packed) == 1 and len(packed[0]["lengths"]) == 3
    grads = []
    for attention, batch in (("sdpa", PaddedCollator(0)(rows)), (ATTENTION, PackedCollator()(packed))):
        model = _model(tiny_model_dir).train()
        model.set_attn_implementation(attention)
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    padded, flat = grads
    targets = sum(sum(x != IGNORE for x in r["labels"][1:]) for r in rows)
    assert targets == int((PackedCollator()(packed)["labels"] != IGNORE).sum())
    assert padded.keys() == flat.keys() and len(padded) == len(list(_model(tiny_model_dir).parameters()))
    for name, g in padded.items():
        assert torch.allclose(g, flat[name], rtol=1e-4, atol=1e-6), (name, (g - flat[name]).abs().max())
        assert g.abs().sum() > 0, name


def test_packed_rows_carry_origins_and_collators_ignore_them():
    rows = _rows(5, seed=6)
    for i, r in enumerate(rows[:4]):
        r["origin"] = {"file": "a.jsonl", "line": i + 1, "index": i}
    packed = packed_rows(rows, 128)
    for p in packed:
        assert len(p["origins"]) == len(p["lengths"])
    lines = sorted(o["line"] for p in packed for o in p["origins"] if o)
    assert lines == [1, 2, 3, 4] and sum(o is None for p in packed for o in p["origins"]) == 1
    assert set(PackedCollator()(packed)) == {"input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                                             "max_length_q", "max_length_k"}
    assert set(PaddedCollator(0)(rows)) == {"input_ids", "labels", "attention_mask"}
