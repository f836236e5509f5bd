"""Training data for a run: the one loader -> weighted mix -> split -> rendered rows (-> packed rows).

Everything that happens to the records is counted in the run's ``data_report.json``, per source and per
file; records the data engine refused are written to the run's ``rejects.jsonl`` with file, line, field and
reason. Every row keeps the ``origin`` (file, line, index) of its record(s): ``lineage.jsonl`` lists, for each
training row in order, where its samples came from (a packed row holds several).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from sftkit.config import SFTConfig
from sftkit.data.pipeline import Report
from sftkit.data.source import DataSource, load, weighted
from sftkit.errors import SftkitError
from sftkit.tokenize.packing import packed_rows
from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions
from sftkit.train.run_dir import atomic_write_text


def eval_source(cfg: SFTConfig) -> DataSource | None:
    """The config's separate evaluation source, if any."""
    ev = cfg.data.eval_file
    return DataSource(path=ev) if isinstance(ev, str) else ev


def load_records(cfg: SFTConfig, run_dir: Path | None = None, purpose: str = "train") -> tuple[list[dict], list[dict], dict]:
    """(train records, eval records, report) for the config's sources; rejects go to ``run_dir/rejects.jsonl``.

    ``purpose="prompts"`` (RL stages) also keeps prompt-only records (conversations ending with a user turn)."""
    rng = random.Random(cfg.data.seed)
    report = Report()
    rejects = run_dir / "rejects.jsonl" if run_dir is not None else None
    if rejects is not None:
        rejects.unlink(missing_ok=True)  # an earlier run's rejects would mislead
    pools = load(cfg.data.datasets, seed=cfg.data.seed, report=report, rejects=rejects, purpose=purpose)
    names = _unique([p.source.label for p in pools])
    train_pools, weights, evals, per_source = {}, {}, [], {}
    for name, pool in zip(names, pools, strict=True):
        records = pool.records
        rng.shuffle(records)
        n_eval = round(len(records) * cfg.data.val_size)
        evals += records[:n_eval]
        train_pools[name], weights[name] = records[n_eval:], pool.source.weight
        per_source[name] = {"read": pool.read, "rejected": pool.rejected, "records": len(records),
                            "eval": n_eval, "weight": pool.source.weight}
    mixed, counts, resampled = weighted(train_pools, weights, rng)
    if cfg.data.max_samples:
        mixed = mixed[: cfg.data.max_samples]
    ev = eval_source(cfg)
    if ev is not None:
        (eval_pool,) = load([ev], seed=cfg.data.seed, report=report, rejects=rejects, purpose=purpose)
        evals = eval_pool.records
        per_source[f"eval: {ev.label}"] = {"read": eval_pool.read, "rejected": eval_pool.rejected,
                                           "records": len(evals), "eval": len(evals)}
    conversion = report.to_dict()
    conversion["rejects_path"] = str(rejects) if conversion["rejected"] and rejects is not None else None
    return mixed, evals, {"conversion": conversion, "sources": per_source, "drawn": counts, "resampled": resampled}


def _unique(names: list[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def build_rows(records: list[dict], renderer: Renderer) -> list[dict]:
    """Rendered rows (input_ids, labels, origin); dropped records are counted in ``renderer.stats``."""
    return [r for r in renderer.render_many(records) if r is not None]


def _per_file(rows: list[dict]) -> dict[str, int]:
    return dict(Counter((r.get("origin") or {}).get("file", "?") for r in rows))


def prepare(cfg: SFTConfig, tokenizer, run_dir: Path, write: bool = True) -> tuple[list[dict], list[dict], Renderer]:
    """Train and eval rows for a run; writes ``data_report.json`` (and ``rejects.jsonl``) to the run folder.

    ``write=False`` (processes other than the main one) writes nothing."""
    train_recs, eval_recs, loaded = load_records(cfg, run_dir if write else None)
    opts = RenderOptions(max_length=cfg.data.max_length, overflow=cfg.data.overflow,
                         train_on_prompt=cfg.data.train_on_prompt, mask_history=cfg.data.mask_history)
    renderer = Renderer(tokenizer, cfg.template, opts)
    train_rows = build_rows(train_recs, renderer)
    stats = renderer.stats.to_dict()
    eval_rows = build_rows(eval_recs, renderer) if eval_recs else []
    report = {**loaded, "train_records": len(train_recs), "eval_records": len(eval_recs),
              "render": stats, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
              "train_rows_per_file": _per_file(train_rows),
              "train_tokens": sum(len(r["input_ids"]) for r in train_rows),
              "target_tokens": sum(sum(x != IGNORE for x in r["labels"]) for r in train_rows)}
    if cfg.data.packing and train_rows:
        train_rows = packed_rows(train_rows, cfg.data.max_length)
        eval_rows = packed_rows(eval_rows, cfg.data.max_length) if eval_rows else []
        report["packed_rows"] = len(train_rows)
    path = run_dir / "data_report.json"
    if write and renderer.drops:  # records dropped while rendering join the converter's rejects, traceable
        with open(run_dir / "rejects.jsonl", "a", encoding="utf-8") as fh:
            for d in renderer.drops:
                o = d["origin"] or {}
                fh.write(json.dumps({"source": o.get("file"), "line": o.get("line"), "index": o.get("index"),
                                     "field": "", "reason": f"dropped while rendering: {d['reason']}",
                                     "stage": "render"}, ensure_ascii=False) + "\n")
        report["rejects_path"] = str(run_dir / "rejects.jsonl")
    if write:
        atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False, default=str))
        atomic_write_text(run_dir / "lineage.jsonl", "".join(
            json.dumps({"row": i, "origins": r.get("origins") or [r.get("origin")]}, ensure_ascii=False) + "\n"
            for i, r in enumerate(train_rows)))
    if not train_rows:
        dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "none"
        raise SftkitError(f"no training rows left after rendering ({len(train_recs)} records; dropped: {dropped}; "
                          f"see {path})")
    return train_rows, eval_rows, renderer
