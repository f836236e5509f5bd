"""`sftkit eval`: generate a reply for every record, score it against the reference, write the report.

Outputs in DIR: ``metrics.json``, ``predictions.jsonl`` (prompt, reference, prediction, per-sample
scores) and ``report.md``. With ``n`` answers per prompt (``GenerationOptions.n``, ``--samples``), the
usual metrics read the first answer of each prompt, pass@k and maj@n read them all, and each prediction
line keeps every sample (``samples``). The base model and a fine-tuned run are evaluated the same way, so
"before vs after" is two calls and ``sftkit eval --compare``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from sftkit.data.pipeline import Report
from sftkit.data.source import DataSource, iter_source
from sftkit.errors import SftkitError
from sftkit.eval.answers import reference_answer
from sftkit.eval.report import metrics_table, write_report
from sftkit.eval.scoring import score, score_samples
from sftkit.generation import GenerationOptions
from sftkit.progress import progress


def eval_item(rec: dict) -> tuple[dict | None, str | None]:
    """One canonical record as an eval item ``{prompt, reference, final_answer, tools, origin}``, or why it has none.

    Preference records use the chosen reply as the reference; a KTO record labelled undesirable, a text record
    and a record with media (a text-only eval) have nothing to compare against."""
    msgs = rec.get("messages")
    if not msgs:
        return None, "text record (no prompt)"
    if any(rec.get(k) for k in ("images", "videos", "audios")):
        return None, "media in a text-only eval"
    if "chosen" in rec:
        msgs = [*msgs, rec["chosen"]]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None or rec.get("label") is False:
        return None, "no reference reply"
    reference = msgs[last].get("content") or ""
    return {"prompt": msgs[:last], "reference": reference, "tools": rec.get("tools") or None,
            "final_answer": reference_answer(reference, rec.get("meta") or {}), "origin": rec.get("origin")}, None


def load_eval_records(data, fmt: str | None = None, max_samples: int | None = None,
                      skipped: dict | None = None) -> list[dict]:
    """Eval items of a data source (a path or a :class:`~sftkit.data.source.DataSource`), read by the one loader.

    Records without a reference are counted in ``skipped`` by reason (invalid records as "invalid record")."""
    source = data if isinstance(data, DataSource) else DataSource(path=str(data), format=fmt)
    skipped = skipped if skipped is not None else {}
    out = []
    for recs, rej in iter_source(source, Report()):
        if rej is not None:
            skipped["invalid record"] = skipped.get("invalid record", 0) + 1
        for rec in recs or []:
            item, why = eval_item(rec)
            if item is None:
                skipped[why] = skipped.get(why, 0) + 1
                continue
            out.append(item)
            if max_samples and len(out) >= max_samples:
                return out
    if not out:
        raise SftkitError(f"{source.label}: no conversation records with a reference reply to evaluate"
                          + (f" (skipped: {skipped})" if skipped else ""))
    return out


@torch.no_grad()
def reference_loss(chat, items: list[dict], batch_size: int = 16) -> tuple[float, float]:
    """Token-weighted mean loss of ``chat.model`` on the reference replies (prompt masked, end of turn
    learned, exactly as training renders them) and its perplexity. Encodes with a private copy of the
    tokenizer's backend, so no padding or truncation state of the shared tokenizer can leak in."""
    from sftkit.models import plain_backend
    from sftkit.tokenize.packing import PaddedCollator
    from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions

    renderer = Renderer(chat.tokenizer, chat.renderer.template, RenderOptions(max_length=2048, mask_history=True))
    renderer.backend = plain_backend(chat.tokenizer)
    rows = [r for r in renderer([{"messages": [*it["prompt"], {"role": "assistant", "content": it["reference"]}],
                                  "tools": it.get("tools")} for it in items]) if r]
    total, count = 0.0, 0
    collate = PaddedCollator(chat.tokenizer.pad_token_id)
    was = chat.model.training
    chat.model.eval()
    try:
        for i in range(0, len(rows), batch_size):
            batch = {k: v.to(chat.model.device) for k, v in collate(rows[i:i + batch_size]).items()}
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += chat.model(**batch).loss.float().item() * n
            count += n
    finally:
        chat.model.train(was)
    loss = total / count if count else float("nan")
    return loss, math.exp(min(loss, 50))


def evaluate(model: str, data: str, out_dir: str | Path | None = None, *, fmt: str | None = None,
             max_samples: int | None = None, options: GenerationOptions | None = None,
             template: str | None = None) -> dict:
    """Evaluate a model or run folder on a data file (each prompt rendered with its record's tools);
    write metrics.json, predictions.jsonl, report.md. ``options.n`` > 1 samples that many answers per
    prompt (temperature > 0) and adds pass@k and maj@n."""
    from sftkit.infer import Chat

    opts = options or GenerationOptions()
    n = opts.n
    if n > 1 and opts.temperature == 0:
        raise SftkitError(f"{n} samples per prompt need a temperature above 0 (greedy answers are all the same); "
                          "set --temperature (e.g. 0.7) or eval.temperature")
    skipped: dict = {}
    items = load_eval_records(data, fmt, max_samples, skipped)
    chat = Chat(model, template)
    start = time.perf_counter()
    done = []
    with progress("generating", total=len(items), every=1) as tick:
        for i in range(0, len(items), opts.batch_size):
            chunk = items[i:i + opts.batch_size]
            done += chat.complete([c["prompt"] for c in chunk], [c.get("tools") for c in chunk], replace(opts, n=n))
            for _ in chunk:
                tick()
    gen_seconds = time.perf_counter() - start
    samples = [done[i * n:(i + 1) * n] for i in range(len(items))]  # generate keeps a prompt's n together
    metrics, per = score(items, [s[0].text for s in samples])
    if n > 1:
        sampled, sampled_per = score_samples(items, [[c.text for c in s] for s in samples])
        metrics.update(sampled)
    else:
        sampled_per = [None] * len(items)
    metrics["loss"], metrics["perplexity"] = (round(x, 4) for x in reference_loss(chat, items, opts.batch_size))
    metrics.update({"model": str(model), "data": str(data), "skipped": skipped, "generation": {
        "greedy": opts.temperature == 0, "temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k,
        "stop": opts.stop, "seed": opts.seed, "max_new_tokens": opts.max_new_tokens, "batch_size": opts.batch_size,
        "n": n, "seconds": round(gen_seconds, 2), "samples_per_s": round(len(items) / gen_seconds, 3),
        "finish_reasons": dict(Counter(c.finish_reason for c in done))}})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
        with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for it, s, p, sp in zip(items, samples, per, sampled_per, strict=True):
                c, prompt = s[0], it["prompt"][-1]["content"] if it["prompt"] else ""
                line = {"origin": it.get("origin"), "prompt": prompt, "messages": it["prompt"],
                        "tools": it.get("tools"), "reference": it["reference"], "final_answer": it["final_answer"],
                        "prediction": c.text, "tool_calls": c.tool_calls, "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "scores": p}
                if sp is not None:
                    line["samples"] = _sample_lines(s, sp)
                    line.update({k: v for k, v in sp.items() if k not in ("answers", "correct")})
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        write_report(out, metrics)
    print(metrics_table(metrics))
    return metrics


def _sample_lines(completions: list, scored: dict) -> list[dict]:
    """Every sampled reply of one prompt for predictions.jsonl: text, extracted answer, correct or None."""
    correct = scored.get("correct") or [None] * len(completions)
    return [{"prediction": c.text, "answer": a, "correct": ok, "finish_reason": c.finish_reason,
             "completion_tokens": c.completion_tokens}
            for c, a, ok in zip(completions, scored["answers"], correct, strict=True)]
