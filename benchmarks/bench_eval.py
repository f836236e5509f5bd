"""Generation throughput of `sftkit eval` against a plain `model.generate` loop (not a timed test).

Same model (the shipped base), same 64 GSM8K test prompts, greedy, 64 new tokens, in one run:
sftkit batches with left padding and the KV cache; the anchor generates one prompt at a time.
Run: ``.venv/bin/python benchmarks/bench_eval.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
N, NEW = 64, 64


def main() -> None:
    from sftkit.eval.run import load_eval_records
    from sftkit.generation import eos_ids
    from sftkit.infer import Chat

    items = load_eval_records(str(REPO / "data" / "gsm8k" / "test.jsonl"), max_samples=N)
    chat = Chat("sftkit-tiny")
    prompts = [chat.renderer.prompt_text(it["prompt"]) for it in items]
    eos = eos_ids(chat.model, chat.tokenizer, chat.renderer)

    t = time.perf_counter()
    with torch.no_grad():
        for p in prompts:
            enc = chat.tokenizer(p, return_tensors="pt", add_special_tokens=False)
            chat.model.generate(**enc, max_new_tokens=NEW, do_sample=False, eos_token_id=eos,
                                pad_token_id=chat.tokenizer.pad_token_id)
    plain = N / (time.perf_counter() - t)

    t = time.perf_counter()
    chat.generate([it["prompt"] for it in items], max_new_tokens=NEW, batch_size=16)
    ours = N / (time.perf_counter() - t)
    print(json.dumps({"samples": N, "max_new_tokens": NEW, "plain_generate_loop_samples_s": round(plain, 2),
                      "sftkit_eval_samples_s": round(ours, 2), "ratio": round(ours / plain, 2)}, indent=2))


if __name__ == "__main__":
    main()
