"""Shared pieces of the probe: load the shipped base, render rows, greedy accuracy, plain-torch SFT epochs."""

from __future__ import annotations

import random
import time
from collections import defaultdict

import torch

from sftkit.eval.answers import answers_match, extract_answer
from sftkit.generation import GenerationOptions, generate
from sftkit.models import load_model, load_tokenizer
from sftkit.tokenize.render import IGNORE, Renderer


def load(name: str = "sftkit-tiny"):
    """Model (float32, full fine-tune), tokenizer and the renderer of its own ChatML template."""
    tok = load_tokenizer(name)
    model = load_model(name, precision="fp32")
    return model, tok, Renderer(tok)


def accuracy(model, tok, renderer, records: list[dict], max_new_tokens: int = 8, batch: int = 128) -> dict:
    """Greedy answer accuracy overall and per kind (answer match against meta.final_answer)."""
    convs = [r["messages"][:-1] for r in records]
    outs = generate(model, tok, renderer, convs, options=GenerationOptions(
        max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch))
    hits, per = 0, defaultdict(list)
    for r, c in zip(records, outs, strict=True):
        ok = answers_match(extract_answer(c.text), r["meta"]["final_answer"])
        hits += ok
        per[r["meta"]["kind"]].append(ok)
    return {"acc": hits / len(records), **{k: sum(v) / len(v) for k, v in sorted(per.items())}}


def rows(renderer, records: list[dict]) -> list[dict]:
    """Training rows (ids + labels) from the one renderer."""
    return [r for r in renderer(records) if r is not None]


def batches(data: list[dict], size: int, rng: random.Random):
    """Shuffled, right-padded batches (labels padded with IGNORE)."""
    order = list(range(len(data)))
    rng.shuffle(order)
    for i in range(0, len(order), size):
        part = [data[j] for j in order[i:i + size]]
        width = max(len(p["input_ids"]) for p in part)
        ids = torch.zeros((len(part), width), dtype=torch.long)
        lab = torch.full((len(part), width), IGNORE, dtype=torch.long)
        att = torch.zeros((len(part), width), dtype=torch.long)
        for k, p in enumerate(part):
            n = len(p["input_ids"])
            ids[k, :n] = torch.tensor(p["input_ids"])
            lab[k, :n] = torch.tensor(p["labels"])
            att[k, :n] = 1
        yield ids, lab, att


def sft_epoch(model, opt, data: list[dict], batch: int, rng: random.Random) -> float:
    """One epoch of plain SFT; returns the mean loss."""
    model.train()
    losses = []
    for ids, lab, att in batches(data, batch, rng):
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


class Timer:
    """Wall seconds since construction."""

    def __init__(self):
        self.t0 = time.time()

    def __call__(self) -> float:
        return time.time() - self.t0
