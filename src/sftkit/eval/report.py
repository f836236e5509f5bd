"""Reports a person reads: the metrics table, report.md, and the side-by-side comparison of two evals."""

from __future__ import annotations

import json
from pathlib import Path

from sftkit.errors import SftkitError

ROWS = [  # (label, how to read it from metrics.json)
    ("BLEU", lambda m: m["bleu"]),
    ("ROUGE-1 (zh chars)", lambda m: m["rouge_char"]["rouge1"]),
    ("ROUGE-2 (zh chars)", lambda m: m["rouge_char"]["rouge2"]),
    ("ROUGE-L (zh chars)", lambda m: m["rouge_char"]["rougeL"]),
    ("ROUGE-1 (zh jieba words)", lambda m: m["rouge_jieba"]["rouge1"]),
    ("ROUGE-2 (zh jieba words)", lambda m: m["rouge_jieba"]["rouge2"]),
    ("ROUGE-L (zh jieba words)", lambda m: m["rouge_jieba"]["rougeL"]),
    ("exact match", lambda m: m["exact_match"]),
    ("answer accuracy", lambda m: m["answer_accuracy"]),
    ("loss (reference replies)", lambda m: m["loss"]),
    ("perplexity", lambda m: m["perplexity"]),
]
SAMPLING_ROWS = [  # only when several answers were sampled per prompt (metrics["sampling"])
    ("pass@1 (sampled)", lambda m: m["pass@k"]["1"]),
    ("pass@n (all n samples)", lambda m: m["pass@k"][str(m["sampling"]["samples"])]),
    ("majority vote (maj@n)", lambda m: m[f"maj@{m['sampling']['samples']}"]),
]


def _sampling_rows(m: dict) -> list[tuple[str, object]]:
    """(label, value) of every pass@k and of maj@n, when the evaluation sampled several answers."""
    if not isinstance(m.get("sampling"), dict):
        return []
    n = m["sampling"]["samples"]
    return [*((f"pass@{k}", v) for k, v in m["pass@k"].items()), (f"maj@{n}", m[f"maj@{n}"])]


def _sampling_notes(m: dict) -> list[str]:
    """How pass@k and maj@n were computed, for report.md."""
    if not isinstance(m.get("sampling"), dict):
        return []
    sm, g = m["sampling"], m.get("generation", {})
    n = sm["samples"]
    return [f"- Sampling: {n} answers per prompt (temperature {g.get('temperature')}, top_p {g.get('top_p')}, "
            f"seed {g.get('seed')}); BLEU to answer accuracy read the first answer of each prompt. pass@k and "
            f"maj@{n} are means over the {sm['answer_samples']} records with a final answer; "
            f"{sm['no_answer_share']:.1%} of all samples had no extractable answer.",
            "- pass@k: per record, with c of the n samples correct (the answer accuracy compare), the unbiased "
            "estimator of Chen et al. 2021, 1 - C(n-c, k) / C(n, k): the chance that at least one of k samples "
            "drawn without replacement is correct; pass@1 is the mean share of correct samples.",
            f"- maj@{n} (self-consistency): the answer most of the n samples give is compared with the final "
            "answer. Answers vote together when they compare equal (numerically for numbers: 72, 72.0 and $72 "
            "are one vote); samples without an answer do not vote (none at all: wrong); a tie goes to the answer "
            f"that appeared first ({sm['tied_votes']} records had a tied vote)."]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_table(m: dict) -> str:
    """Aligned text table of one evaluation."""
    lines = [f"{m.get('model', '')} on {m.get('data', '')} ({m['samples']} samples)"]
    lines += [f"  {label:<28}{_fmt(get(m)):>12}" for label, get in ROWS]
    lines += [f"  {label:<28}{_fmt(v):>12}" for label, v in _sampling_rows(m)]
    lines.append(f"  BLEU: one corpus score, tokenize={m.get('bleu_tokenize', '?')}; ROUGE F1 x100, tokenized per "
                 "pair from the reference (Chinese pairs by characters and by jieba words)")
    lines.append(f"  answer accuracy over {m.get('answer_samples', 0)} of {m['samples']} records "
                 "(those with a final answer)")
    if _sampling_rows(m):
        lines.append(f"  {m['sampling']['samples']} samples per prompt: pass@k and maj@n over all of them (over "
                     f"{m['sampling']['answer_samples']} records), the other metrics over the first")
    if m.get("skipped"):
        lines.append("  not evaluated: " + ", ".join(f"{k} {v}" for k, v in m["skipped"].items()))
    return "\n".join(lines)


def write_report(out: Path, m: dict, examples: int = 10) -> None:
    """report.md: the table, the conventions (sacrebleu signatures) and the first predictions."""
    lines = [f"# Evaluation: {m.get('model')}", "", f"Data: `{m.get('data')}`, {m['samples']} samples; generation: "
             f"{'greedy' if m['generation']['greedy'] else 'sampling'}, max {m['generation']['max_new_tokens']} new tokens.",
             "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {label} | {_fmt(get(m))} |" for label, get in ROWS]
    lines += [f"| {label} | {_fmt(v)} |" for label, v in _sampling_rows(m)]
    lines += ["", "## Conventions", "", "- BLEU: one sacrebleu corpus BLEU over all records, tokenized `zh` when any "
              "reference is Chinese (CJK characters split, other text as `13a`), else `13a`; signature "
              f"`{m.get('bleu_signature', '?')}`. Per tokenizer group, each record's tokenizer chosen from its reference:"]
    lines += [f"  - `{tok}` ({g['n']} records): {g['bleu']:.4f}, signature `{g['signature']}`" for tok, g in m["bleu_groups"].items()]
    lines += ["- ROUGE-1/2/L: F1 x100 (rouge-score); the tokenization is chosen once per pair, from the reference, and "
              "applied to both sides: Chinese pairs by characters (CJK characters, other words whole) and, separately, "
              "by jieba words; other pairs by rouge-score's default tokenizer.",
              "- Exact match: whole reply equals the reference ignoring case, whitespace and punctuation (the "
              "punctuation inside numbers counts).",
              f"- Answer accuracy: over the {m.get('answer_samples', 0)} records with a final answer (the record's "
              "`final_answer`, or an explicit `#### N`, `\\boxed{}`, 答案：…, \"The answer is …\" in the reference; "
              "never a bare last number), against the answer extracted from the prediction (those markers when "
              "followed by an answer, else the last number); numbers compared numerically (relative tolerance 1e-6).",
              *_sampling_notes(m), "", "## Predictions", ""]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[:examples]]
    for p in preds:
        lines += [f"- **prompt**: {p['prompt'][:300]}", f"  - reference: {p['reference'][:300]}",
                  f"  - prediction: {p['prediction'][:300]}"]
        if isinstance(p.get("samples"), list):
            answers = ", ".join(str(x.get("answer")) for x in p["samples"])
            lines.append(f"  - answers of the {len(p['samples'])} samples: {answers[:300]}; majority: "
                         f"{p.get('majority_answer')} ({p.get('correct_samples')} correct)")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _json_text(path: Path, what: str) -> str:
    """The UTF-8 text of an evaluation file, or a one-line error naming it."""
    if not path.is_file():
        raise SftkitError(f"{path}: no {what} (run `sftkit eval ... -o {path.parent}` first)")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SftkitError(f"{path}: not UTF-8 text (byte {e.start}); is it a damaged or binary file?") from None
    except OSError as e:
        raise SftkitError(f"{path}: cannot read ({e.strerror or e})") from None


def read_metrics(d: str | Path) -> dict:
    """metrics.json of an evaluation folder, checked to be the object ``sftkit eval`` writes."""
    path = Path(d) / "metrics.json"
    try:
        m = json.loads(_json_text(path, "metrics.json"))
    except ValueError as e:
        raise SftkitError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or "samples" not in m:
        got = f"a JSON {type(m).__name__}" if not isinstance(m, dict) else "an object without 'samples'"
        raise SftkitError(f"{path}: not the metrics of a sftkit evaluation ({got})")
    return m


def read_predictions(d: str | Path) -> list[dict]:
    """predictions.jsonl of an evaluation folder: one object with prompt, reference and prediction per line."""
    path = Path(d) / "predictions.jsonl"
    out = []
    for line, text in enumerate(_json_text(path, "predictions.jsonl").splitlines(), 1):
        if not text.strip():
            continue
        try:
            p = json.loads(text)
        except ValueError as e:
            raise SftkitError(f"{path}:{line}: not valid JSON ({e})") from None
        missing = [k for k in ("prompt", "reference", "prediction") if not isinstance(p, dict) or k not in p]
        if missing:
            raise SftkitError(f"{path}:{line}: not a prediction record (no {', '.join(missing)})")
        out.append(p)
    return out


def _load(d: str | Path) -> tuple[dict, list[dict]]:
    if not Path(d).is_dir():
        raise SftkitError(f"{d}: not an evaluation folder (run `sftkit eval ... -o {d}` first)")
    return read_metrics(d), read_predictions(d)


def _metric(get, m: dict):
    """One metric of metrics.json, or None when this evaluation lacks it (an older or partial run)."""
    try:
        return get(m)
    except (KeyError, TypeError):
        return None


def _sample_score(p: dict) -> float:
    s = p["scores"] if isinstance(p.get("scores"), dict) else {}
    rouge = s["rouge_char"] if isinstance(s.get("rouge_char"), dict) else {}
    rouge_l = rouge.get("rougeL")
    return (rouge_l if isinstance(rouge_l, int | float) else 0.0) + 100 * bool(s.get("answer_correct"))


def compare(dir_a: str | Path, dir_b: str | Path, top: int = 5) -> tuple[str, dict]:
    """Side-by-side metrics with deltas, and the samples whose score changed most."""
    (ma, pa), (mb, pb) = _load(dir_a), _load(dir_b)
    lines = [f"{'metric':<28}{'A':>12}{'B':>12}{'B - A':>12}", f"  A = {ma.get('model')}", f"  B = {mb.get('model')}"]
    result = {"a": str(dir_a), "b": str(dir_b), "metrics": {}, "changed": []}
    sampled = any(isinstance(m.get("sampling"), dict) for m in (ma, mb))
    for label, get in ROWS + (SAMPLING_ROWS if sampled else []):
        a, b = _metric(get, ma), _metric(get, mb)
        delta = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
        result["metrics"][label] = {"a": a, "b": b, "delta": delta}
        lines.append(f"{label:<28}{_fmt(a):>12}{_fmt(b):>12}{_fmt(delta):>12}")
    if len(pa) == len(pb) and all(x["prompt"] == y["prompt"] for x, y in zip(pa, pb, strict=True)):
        moved = sorted(range(len(pa)), key=lambda i: abs(_sample_score(pb[i]) - _sample_score(pa[i])), reverse=True)[:top]
        lines.append("\nsamples that changed most:")
        for i in moved:
            change = {"prompt": pa[i]["prompt"], "a": pa[i]["prediction"], "b": pb[i]["prediction"],
                      "delta": round(_sample_score(pb[i]) - _sample_score(pa[i]), 2)}
            result["changed"].append(change)
            lines.append(f"  [{change['delta']:+.1f}] {str(change['prompt'])[:70]!r}\n      A: {str(change['a'])[:80]!r}"
                         f"\n      B: {str(change['b'])[:80]!r}")
    else:
        lines.append("\n(the two evaluations cover different samples: no per-sample comparison)")
    return "\n".join(lines), result
