"""`sftkit eval`: generate a reply for every record, score it against the reference, write the report.

Outputs in DIR: ``metrics.json``, ``predictions.jsonl`` (prompt, reference, prediction, per-sample
scores) and ``report.md``. The base model and a fine-tuned run are evaluated the same way, so
"before vs after" is two calls and ``sftkit eval --compare``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths
from sftkit.errors import SftkitError
from sftkit.eval.answers import extract_answer
from sftkit.eval.report import metrics_table, write_report
from sftkit.eval.scoring import score
from sftkit.progress import progress


def load_eval_records(data: str, fmt: str | None = None, max_samples: int | None = None,
                      skipped: dict | None = None) -> list[dict]:
    """Conversation records with a reference reply: (prompt messages, reference, final answer, tools).

    Preference records use the chosen reply as the reference; text records and invalid records have
    nothing to answer and are counted in ``skipped`` (by reason)."""
    opts = ConvertOptions(format=fmt)
    skipped = skipped if skipped is not None else {}
    out = []
    for _, recs, rej in iter_converted(sources_from_paths([data], opts), opts, Report()):
        if rej is not None:
            skipped["invalid record"] = skipped.get("invalid record", 0) + 1
        for rec in recs or []:
            msgs = rec.get("messages")
            if not msgs:
                skipped["text record (no prompt)"] = skipped.get("text record (no prompt)", 0) + 1
                continue
            if "chosen" in rec:
                msgs = [*msgs, rec["chosen"]]
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None or (rec.get("label") is False):
                skipped["no reference reply"] = skipped.get("no reference reply", 0) + 1
                continue
            reference = msgs[last]["content"]
            final = rec["meta"].get("final_answer")
            out.append({"prompt": msgs[:last], "reference": reference, "tools": rec.get("tools") or None,
                        "final_answer": str(final) if final is not None else extract_answer(reference)})
            if max_samples and len(out) >= max_samples:
                return out
    if not out:
        raise SftkitError(f"{data}: no conversation records with a reference reply to evaluate")
    return out


@torch.no_grad()
def reference_loss(chat, items: list[dict], batch_size: int = 16) -> tuple[float, float]:
    """Token-weighted mean loss of the model on the reference replies (prompt masked) and its perplexity."""
    from sftkit.tokenize.packing import PaddedCollator
    from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions

    renderer = Renderer(chat.tokenizer, chat.renderer.template, RenderOptions(max_length=2048, mask_history=True))
    rows = [r for r in renderer([{"messages": [*it["prompt"], {"role": "assistant", "content": it["reference"]}],
                                  "tools": it["tools"]} for it in items]) if r]
    total, count = 0.0, 0
    collate = PaddedCollator(chat.tokenizer.pad_token_id)
    for i in range(0, len(rows), batch_size):
        batch = {k: v.to(chat.model.device) for k, v in collate(rows[i:i + batch_size]).items()}
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += chat.model(**batch).loss.float().item() * n
        count += n
    loss = total / count if count else float("nan")
    return loss, math.exp(min(loss, 50))


def evaluate(model: str, data: str, out_dir: str | Path | None = None, *, fmt: str | None = None,
             max_samples: int | None = None, max_new_tokens: int = 256, batch_size: int = 16,
             temperature: float = 0.0, top_p: float = 1.0, template: str | None = None) -> dict:
    """Evaluate a model or run folder on a data file; write metrics.json, predictions.jsonl, report.md."""
    from sftkit.infer import Chat

    skipped: dict = {}
    items = load_eval_records(data, fmt, max_samples, skipped)
    chat = Chat(model, template)
    start = time.perf_counter()
    predictions = []
    with progress("generating", total=len(items), every=1) as tick:
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            predictions += chat.generate([c["prompt"] for c in chunk], max_new_tokens, temperature, top_p, batch_size)
            for _ in chunk:
                tick()
    gen_seconds = time.perf_counter() - start
    metrics, per = score(items, predictions)
    metrics["loss"], metrics["perplexity"] = (round(x, 4) for x in reference_loss(chat, items, batch_size))
    metrics.update({"model": str(model), "data": str(data), "skipped": skipped, "generation": {
        "greedy": temperature == 0, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
        "batch_size": batch_size, "seconds": round(gen_seconds, 2), "samples_per_s": round(len(items) / gen_seconds, 3)}})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
        with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for it, pred, p in zip(items, predictions, per, strict=True):
                prompt = it["prompt"][-1]["content"] if it["prompt"] else ""
                fh.write(json.dumps({"prompt": prompt, "messages": it["prompt"], "reference": it["reference"],
                                     "final_answer": it["final_answer"], "prediction": pred, "scores": p},
                                    ensure_ascii=False) + "\n")
        write_report(out, metrics)
    print(metrics_table(metrics))
    return metrics
