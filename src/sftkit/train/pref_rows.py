"""Preference and KTO records -> pre-tokenized rows for trl's trainers, rendered by sftkit's ``Renderer``.

A reply's tokens and mask are those of the SFT render of (prompt + that reply) with ``mask_history`` (only the
last reply learned): ``prompt_ids`` are the rendered tokens before the reply's first learned token, the reply ids
are its learned tokens (through the end-of-turn token). So ``prompt_ids + chosen_ids`` and the completion mask
trl builds from them equal the SFT row's ``input_ids`` and ``labels != IGNORE`` up to the end of the reply; what
a template writes after the end-of-turn token (a newline) belongs to the next turn and is left out.

Rows: dpo, orpo, simpo -> ``{"prompt_ids", "chosen_ids", "rejected_ids", "origin"}``; kto ->
``{"prompt_ids", "completion_ids", "label", "origin"}``. KTO also reads preference pairs: the chosen reply
becomes a desirable example (label true), the rejected one an undesirable example (as trl's
``unpair_preference_dataset`` does).

Truncation to ``data.max_length`` (per sequence: prompt + one reply), when ``data.overflow`` is ``truncate``:
the prompt keeps its end and the replies their start; the prompt keeps at most
``max(max_length // 2, max_length - longest reply)`` tokens and the replies get the rest. With ``drop`` the
record goes to ``rejects.jsonl``. Nothing is lost silently: a record of the wrong kind (an SFT conversation given
to dpo, a pair without a rejected reply, a kto conversation without a label) or one the renderer drops is
written to the run's ``rejects.jsonl`` with file, line, field and reason, and counted in ``data_report.json``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from sftkit.errors import SftkitError
from sftkit.schema import record_kind
from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions
from sftkit.train.data import load_records
from sftkit.train.run_dir import atomic_write_text

SHAPES = {"pair": "messages ending with a user turn plus `chosen` and `rejected` assistant replies",
          "kto": "a conversation ending with an assistant reply plus `label` (true: desirable, false: undesirable), "
                 "or a preference pair"}


def record_problem(rec: dict, stage: str) -> tuple[str, str] | None:
    """(field, reason) when ``rec`` cannot train ``stage``, else None."""
    kind = record_kind(rec)
    want = SHAPES["kto" if stage == "kto" else "pair"]
    if kind == "text":
        return "text", f"stage {stage} needs {want}; this is a plain text record"
    msgs = rec.get("messages") or []
    if stage == "kto":
        if kind == "preference":
            return record_problem(rec, "dpo")
        if kind == "conversation":
            kept = {k: v for k, v in (rec.get("meta") or {}).items() if k in ("label", "kto_tag")}
            if kept:  # the loader keeps a label that is not a JSON boolean in meta, untouched
                key, value = next(iter(kept.items()))
                return key, f"{key} {value!r} is not true/false (stage kto needs a JSON boolean; kept in meta.{key})"
            return "label", f"stage kto needs {want}; this conversation has no `label`"
        if not isinstance(rec["label"], bool):
            return "label", f"`label` must be true or false, got {rec['label']!r}"
        if not msgs or msgs[-1].get("role") != "assistant":
            return "messages", "a kto record must end with the assistant reply its label judges"
        return None
    if kind == "conversation":
        return "chosen", f"stage {stage} needs {want}; this is a conversation without `chosen`/`rejected`"
    if kind == "kto":
        return "rejected", f"stage {stage} needs {want}; a kto record has one labelled reply, not a pair"
    for key in ("chosen", "rejected"):
        reply = rec.get(key)
        if not isinstance(reply, dict) or reply.get("role") != "assistant":
            return key, f"no `{key}` assistant reply (stage {stage} needs {want})"
    if not msgs or msgs[-1].get("role") == "assistant":
        return "messages", "the prompt must end with a user (or tool) turn; the replies follow it"
    return None


def _conversation(rec: dict, messages: list[dict], key: int) -> dict:
    """A plain SFT conversation for the renderer; ``origin`` is replaced by ``key`` to trace drops back."""
    conv = {k: rec[k] for k in ("images", "videos", "audios", "tools") if rec.get(k)}
    return {**conv, "messages": messages, "origin": key}


def _split(row: dict) -> tuple[list[int], list[int]]:
    """(tokens before the learned reply, the learned reply tokens) of a ``mask_history`` SFT row."""
    learned = [i for i, t in enumerate(row["labels"]) if t != IGNORE]
    start, end = learned[0], learned[-1] + 1
    return row["input_ids"][:start], row["input_ids"][start:end]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefRenderer:
    """Renders records for one preference stage; keeps counts (``counts``) and rejects (``rejects``)."""

    def __init__(self, tokenizer, template, stage: str, max_length: int, overflow: str = "truncate",
                 kl_window: int = 1):
        opts = RenderOptions(max_length=sys.maxsize, mask_history=True)  # truncation is ours, per pair
        self.renderer = Renderer(tokenizer, template, opts)
        self.stage, self.max_length, self.overflow, self.kl_window = stage, max_length, overflow, kl_window
        self.counts: Counter = Counter()
        self.rejects: list[dict] = []

    def _reject(self, rec: dict, field: str, reason: str, split: str) -> None:
        o = rec.get("origin") or {}
        self.counts[f"rejected: {reason.split(';')[0].split(' (')[0][:60]}"] += 1
        self.rejects.append({"source": o.get("file"), "line": o.get("line"), "index": o.get("index"),
                             "field": field, "reason": reason, "stage": self.stage, "split": split})

    def rows(self, records: list[dict], split: str = "train") -> list[dict]:
        """Rows of the records that fit the stage; the others are rejected (``self.rejects``)."""
        jobs = []  # (record, [(reply message, label)])
        for rec in records:
            problem = record_problem(rec, self.stage)
            if problem:
                self._reject(rec, *problem, split)
            elif record_kind(rec) == "preference":
                jobs.append((rec, [(rec["chosen"], True), (rec["rejected"], False)]))
            else:
                jobs.append((rec, [(rec["messages"][-1], rec["label"])]))
        convs = []
        for i, (rec, replies) in enumerate(jobs):
            prompt = rec["messages"] if record_kind(rec) == "preference" else rec["messages"][:-1]
            convs += [_conversation(rec, [*prompt, reply], i) for reply, _ in replies]
        self.renderer.drops.clear()
        rendered = list(self.renderer.render_many(convs))
        why = {d["origin"]: d["reason"] for d in self.renderer.drops}
        groups, pos = [], 0  # the rows of each record
        for i, (rec, replies) in enumerate(jobs):
            parts = rendered[pos:pos + len(replies)]
            pos += len(replies)
            if any(p is None for p in parts):
                self._reject(rec, "messages", f"dropped while rendering: {why.get(i, 'unknown')}", split)
                continue
            groups.append(self._finish(rec, [_split(p) for p in parts], [label for _, label in replies], split))
        return unpaired([g for g in groups if g], self.kl_window)

    def _finish(self, rec: dict, splits: list, labels: list[bool], split: str) -> list[dict]:
        prompt = splits[0][0]
        if any(p != prompt for p, _ in splits):  # a token merged across the prompt/reply boundary
            self.counts["prompt_boundary_merged"] += 1
            full = [p + r for p, r in splits]
            n = min(min(len(p) for p, _ in splits), *(_common(full[0], f) for f in full[1:]))
            prompt, replies = full[0][:n], [f[n:len(p) + len(r)] for f, (p, r) in zip(full, splits, strict=True)]
        else:
            replies = [r for _, r in splits]
        longest = max(map(len, replies))
        if len(prompt) + longest > self.max_length:
            if self.overflow == "drop":
                self._reject(rec, "messages", f"too long: {len(prompt) + longest} tokens > data.max_length "
                             f"{self.max_length} (data.overflow=drop)", split)
                return []
            keep = min(len(prompt), max(self.max_length // 2, self.max_length - longest))
            prompt = prompt[len(prompt) - keep:]
            replies = [r[: self.max_length - keep] for r in replies]
            self.counts["truncated"] += 1
        self.counts["rows"] += 1
        origin = rec.get("origin")
        if self.stage != "kto":
            return [{"prompt_ids": prompt, "chosen_ids": replies[0], "rejected_ids": replies[1], "origin": origin}]
        return [{"prompt_ids": prompt, "completion_ids": r, "label": lab, "origin": origin}
                for r, lab in zip(replies, labels, strict=True)]


def unpaired(groups: list[list[dict]], window: int) -> list[dict]:
    """The rows of each record (``groups``), laid out as trl's ``unpair_preference_dataset`` does, per ``window``
    records: the chosen rows of the window's pairs, its one-row records, then the rejected rows in pair order.

    KTO estimates its KL term from mismatched (prompt, completion) pairs by rotating the completions by one within
    each batch; interleaved (chosen, rejected) rows would give every rejected row its own prompt's chosen reply.
    Here a pair's rows lie as many rows apart as the window has records, so the rotation crosses prompts when that distance is
    neither 1 nor batch size - 1 (``prepare`` picks half the batch; see ``kl_window``); the last, short window
    joins the one before it.
    """
    starts = list(range(0, len(groups), max(window, 1)))
    if len(starts) > 1 and len(groups) - starts[-1] < window:
        starts.pop()
    out = []
    for a, b in zip(starts, [*starts[1:], len(groups)][:len(starts)], strict=True):
        chunk = groups[a:b]
        out += [g[0] for g in chunk if len(g) == 2] + [g[0] for g in chunk if len(g) == 1]
        out += [g[1] for g in chunk if len(g) == 2]
    return out


def kl_window(batch_size: int) -> int:
    """Records per ``unpaired`` window for KTO: half a batch (each batch holds chosen and rejected rows, of
    different pairs); below 4 a whole batch (a pair's two rows then never share a batch)."""
    return batch_size // 2 if batch_size >= 4 else batch_size


def prepare(cfg, tokenizer, run_dir: Path, write: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Train and eval rows of a preference stage; writes ``data_report.json``, ``rejects.jsonl`` and
    ``lineage.jsonl`` to the run folder (``write=False``: nothing written).

    Raises:
        SftkitError: no record fits the stage (the reasons are in ``rejects.jsonl``).
    """
    train_recs, eval_recs, loaded = load_records(cfg, run_dir if write else None)
    pr = PrefRenderer(tokenizer, cfg.template, cfg.stage, cfg.data.max_length, cfg.data.overflow,
                      kl_window=kl_window(cfg.train.batch_size) if cfg.stage == "kto" else 1)
    train_rows = pr.rows(train_recs, "train")
    train_counts = dict(pr.counts)
    pr.counts.clear()
    eval_rows = pr.rows(eval_recs, "eval") if eval_recs else []
    rejects = run_dir / "rejects.jsonl"
    tokens = sum(len(r["prompt_ids"]) + sum(len(r.get(k, [])) for k in ("chosen_ids", "rejected_ids",
                                                                          "completion_ids")) for r in train_rows)
    report = {**loaded, "stage": cfg.stage, "train_records": len(train_recs), "eval_records": len(eval_recs),
              "render": {"train": train_counts, "eval": dict(pr.counts)}, "train_rows": len(train_rows),
              "eval_rows": len(eval_rows), "train_tokens": tokens,
              # every line of rejects.jsonl: refused while reading + refused for the stage (train and eval)
              "rejected": {"reading": loaded["conversion"]["rejected"], "stage": len(pr.rejects)}}
    if write:
        if pr.rejects:
            with open(rejects, "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in pr.rejects)
            report["rejects_path"] = str(rejects)
        atomic_write_text(run_dir / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str))
        atomic_write_text(run_dir / "lineage.jsonl", "".join(
            json.dumps({"row": i, "origins": [r.get("origin")]}, ensure_ascii=False) + "\n"
            for i, r in enumerate(train_rows)))
    if not train_rows:
        first = pr.rejects[0] if pr.rejects else {}
        raise SftkitError(f"stage {cfg.stage}: no usable training records among {len(train_recs)}; e.g. "
                          f"{first.get('source')} line {first.get('line')}, field {first.get('field')!r}: "
                          f"{first.get('reason')} (all reasons in {rejects})")
    return train_rows, eval_rows, report
