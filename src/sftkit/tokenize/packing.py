"""Packing: bin rows into ``max_length`` rows (best-fit decreasing) and collate them padding-free.

A packed batch is one flattened sequence; position ids restart at every sample and attention stays
inside each sample. The ``sftkit_varlen`` attention runs one causal SDPA call per sample (read from
``cu_seq_lens``), so its cost grows linearly with the number of samples, unlike one SDPA call over
the whole flattened batch with a block-diagonal mask, which is quadratic in the tokens per batch.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from sftkit.tokenize.render import IGNORE

ATTENTION = "sftkit_varlen"


def pack(rows: list[dict], max_length: int) -> list[list[dict]]:
    """Best-fit decreasing: each bin is a list of rows whose lengths sum to at most ``max_length``."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]), reverse=True)
    space: list[int] = []  # free space of each bin, kept sorted, with its bin index
    owners: list[int] = []
    bins: list[list[dict]] = []
    for i in order:
        n = len(rows[i]["input_ids"])
        k = bisect.bisect_left(space, n)  # the fullest bin that still fits
        if k < len(space):
            b = owners.pop(k)
            left = space.pop(k) - n
        else:
            b = len(bins)
            bins.append([])
            left = max_length - n
        bins[b].append(rows[i])
        j = bisect.bisect_left(space, left)
        space.insert(j, left)
        owners.insert(j, b)
    return bins


def packed_rows(rows: list[dict], max_length: int) -> list[dict]:
    """Packed training rows: ``input_ids``, ``labels``, per-sample ``lengths`` and ``origins`` (lineage:
    each sample's ``origin``, None where a row has none). Collators read only the keys they need."""
    out = []
    for group in pack(rows, max_length):
        ids, labels, lengths = [], [], []
        for r in group:
            ids += r["input_ids"]
            # the first token of a sample is never a target: it would be predicted from the previous sample
            labels += [IGNORE] + r["labels"][1:]
            lengths.append(len(r["input_ids"]))
        out.append({"input_ids": ids, "labels": labels, "lengths": lengths,
                    "origins": [r.get("origin") for r in group]})
    return out


class PackedCollator:
    """Flattens a batch of packed rows into one sequence with restarting position ids and ``cu_seq_lens``."""

    def __call__(self, batch: list[dict]) -> dict:
        ids = [t for r in batch for t in r["input_ids"]]
        labels = [t for r in batch for t in r["labels"]]
        lengths = [n for r in batch for n in r.get("lengths", [len(r["input_ids"])])]
        positions = [p for n in lengths for p in range(n)]
        cu = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions]), "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": max(lengths), "max_length_k": max(lengths)}


class PaddedCollator:
    """Right-pads a batch of rows; padding is masked out of attention and loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        n = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), n), self.pad_id)
        labels = torch.full((len(batch), n), IGNORE)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, r in enumerate(batch):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            labels[i, :k] = torch.tensor(r["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal attention per packed sample (query/key/value: [1, heads, tokens, dim])."""
    cu = kwargs.get("cu_seq_lens_q")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: repeat key/value heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    p = dropout if module.training else 0.0
    if cu is None:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=p,
                                             scale=scaling, is_causal=attention_mask is None and query.shape[2] > 1)
    else:
        bounds = cu.tolist()
        out = torch.cat([F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                                                        dropout_p=p, scale=scaling, is_causal=True)
                         for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s], dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, varlen_attention)
