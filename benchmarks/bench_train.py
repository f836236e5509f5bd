"""Training benchmarks (not timed tests). Run: ``.venv/bin/python benchmarks/bench_train.py``.

1. Preprocessing: render (template + tokenize + masks) 50k Alpaca records (zh + en demos cycled, cutoff
   1024) against the bare ``tokenizers`` fast batch encode of the same rendered text, same run, same
   2 threads: ratio of times (target <= 1.25).
2. Throughput on CPU: the shipped base model, the same data and batch; sftkit (padded and packed)
   against trl's SFTTrainer with its defaults (only what CPU needs changed): tokens/s and ratios.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "2")
REPO = Path(__file__).resolve().parents[1]
LF = REPO / "data" / "llamafactory"


def alpaca_records(n: int) -> list[dict]:
    from sftkit.data.source import DataSource, load

    pools = load([DataSource(path=str(LF / "alpaca_zh_demo.json")), DataSource(path=str(LF / "alpaca_en_demo.json"))])
    base = [r for pool in pools for r in pool.records]
    return [base[i % len(base)] for i in range(n)]


def bench_preprocess(n: int = 50_000) -> dict:
    from sftkit.models import load_tokenizer
    from sftkit.tokenize.render import Renderer, RenderOptions

    tok = load_tokenizer("sftkit-tiny")
    records = alpaca_records(n)
    renderer = Renderer(tok, "chatml", RenderOptions(max_length=1024))
    texts = [renderer.render_text(r)[0] for r in records]
    backend = tok.backend_tokenizer
    backend.encode_batch(texts[:1000], add_special_tokens=False)  # warm up the thread pool
    t = time.perf_counter()
    bare = backend.encode_batch(texts, add_special_tokens=False)
    bare_ids = [e.ids for e in bare]
    t_bare = time.perf_counter() - t
    t = time.perf_counter()
    rows = list(renderer.render_many(records))
    t_ours = time.perf_counter() - t
    same = sum(r["input_ids"] == ids[:1024] for r, ids in zip(rows, bare_ids, strict=True))
    return {"records": n, "bare_encode_s": round(t_bare, 2), "sftkit_render_s": round(t_ours, 2),
            "ratio": round(t_ours / t_bare, 3), "identical_ids": f"{same}/{n}", "target": "<= 1.25"}


def _throughput_rows(tok, n: int = 256):
    from sftkit.tokenize.render import Renderer, RenderOptions

    recs = alpaca_records(n)
    return recs, [r for r in Renderer(tok, None, RenderOptions(max_length=512))(recs) if r]


def bench_throughput(steps: int = 12, batch: int = 8) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from sftkit.models import load_model, load_tokenizer
    from sftkit.tokenize.packing import ATTENTION, PackedCollator, PaddedCollator, packed_rows
    from sftkit.train.sft import _Rows

    tok = load_tokenizer("sftkit-tiny")
    recs, rows = _throughput_rows(tok)
    out = {}
    tmp = Path(tempfile.mkdtemp())

    def run(name, dataset, collator, attn="sdpa"):
        model = load_model("sftkit-tiny", precision="fp32")
        model.set_attn_implementation(attn)
        args = TrainingArguments(output_dir=str(tmp / name), max_steps=steps, per_device_train_batch_size=batch,
                                 learning_rate=1e-4, report_to=[], save_strategy="no", use_cpu=True,
                                 remove_unused_columns=False, disable_tqdm=True, logging_steps=steps)
        trainer = Trainer(model=model, args=args, train_dataset=_Rows(dataset), data_collator=collator)
        n_tokens = sum(len(r["input_ids"]) for r in dataset[: steps * batch])
        t = time.perf_counter()
        trainer.train()
        return n_tokens / (time.perf_counter() - t)

    torch.manual_seed(0)
    out["sftkit_padded_tok_s"] = round(run("padded", rows, PaddedCollator(tok.pad_token_id)))
    packed = packed_rows(rows, 512)
    out["sftkit_packed_tok_s"] = round(run("packed", packed, PackedCollator(), ATTENTION))
    out["trl_sft_tok_s"] = round(_trl(tok, recs, steps, batch, tmp))
    out["sftkit_padded_vs_trl"] = round(out["sftkit_padded_tok_s"] / out["trl_sft_tok_s"], 3)
    out["sftkit_packed_vs_trl"] = round(out["sftkit_packed_tok_s"] / out["trl_sft_tok_s"], 3)
    out["packed_vs_padded"] = round(out["sftkit_packed_tok_s"] / out["sftkit_padded_tok_s"], 3)
    return out


def _trl(tok, recs, steps, batch, tmp) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from sftkit.models import load_model

    ds = Dataset.from_list([{"messages": r["messages"]} for r in recs])
    cfg = SFTConfig(output_dir=str(tmp / "trl"), max_steps=steps, per_device_train_batch_size=batch, max_length=512,
                    bf16=False, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=steps)
    trainer = SFTTrainer(model=load_model("sftkit-tiny", precision="fp32"), args=cfg, train_dataset=ds,
                         processing_class=tok)
    sample = trainer.train_dataset.select(range(min(len(trainer.train_dataset), steps * batch)))
    n_tokens = sum(len(x) for x in sample["input_ids"])
    t = time.perf_counter()
    trainer.train()
    return n_tokens / (time.perf_counter() - t)


def bench_attention(sample_len: int = 128, heads: int = 8, dim: int = 32) -> dict:
    """Attention over a packed batch: sftkit's per-sample causal SDPA against one SDPA call with a
    block-diagonal mask over the flattened batch, as the number of samples grows."""
    import torch
    import torch.nn.functional as F

    from sftkit.tokenize.packing import varlen_attention

    class _M(torch.nn.Module):
        training = False

    out = {}
    for n in (4, 16, 64):
        t = n * sample_len
        q, k, v = (torch.randn(1, heads, t, dim) for _ in range(3))
        cu = torch.arange(0, t + 1, sample_len, dtype=torch.int32)
        seg = torch.arange(t) // sample_len
        mask = (seg[:, None] == seg[None, :]) & torch.ones(t, t, dtype=torch.bool).tril()

        def timed(fn, reps=5):
            fn()
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - start) / reps * 1000

        ours = timed(lambda q=q, k=k, v=v, cu=cu: varlen_attention(_M(), q, k, v, None, cu_seq_lens_q=cu))
        dense = timed(lambda q=q, k=k, v=v, m=mask: F.scaled_dot_product_attention(q, k, v, attn_mask=m[None, None]))
        out[f"{n}_samples"] = {"varlen_ms": round(ours, 2), "block_diagonal_sdpa_ms": round(dense, 2),
                               "mask_mb": round(t * t / 2**20, 1)}
    return out


def main() -> None:
    which = sys.argv[1:] or ["preprocess", "throughput", "attention"]
    res = {}
    if "attention" in which:
        res["attention_cpu"] = bench_attention()
    if "preprocess" in which:
        res["preprocess_50k"] = bench_preprocess()
    if "throughput" in which:
        res["throughput_cpu"] = bench_throughput()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
