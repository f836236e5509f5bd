"""Training data for a run: data engine -> weighted mix -> split -> rendered rows (-> packed rows)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sftkit.config import SFTConfig
from sftkit.data.mix import draw
from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths
from sftkit.data.registry import registry_sources
from sftkit.errors import SftkitError
from sftkit.tokenize.packing import packed_rows
from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions


def _replace(obj, subs: dict[str, str]):
    if isinstance(obj, str):
        for k, v in subs.items():
            obj = obj.replace(k, v)
        return obj
    if isinstance(obj, list):
        return [_replace(x, subs) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, subs) for k, v in obj.items()}
    return obj


def load_records(cfg: SFTConfig) -> tuple[list[dict], list[dict], dict]:
    """(train records, eval records, conversion report) for the config's datasets."""
    rng = random.Random(cfg.data.seed)
    report = Report()
    pools = []
    for ds in cfg.data.datasets:
        opts = ConvertOptions(format=ds.format)
        sources = registry_sources(ds.registry, [ds.dataset], opts) if ds.dataset else sources_from_paths([ds.path], opts)
        records = [r for _, recs, _ in iter_converted(sources, opts, report) for r in recs or []]
        if not records:
            raise SftkitError(f"dataset {ds.path or ds.dataset}: no valid records (run `sftkit data check` on it)")
        pools.append((ds, [_replace(r, ds.replace) for r in records] if ds.replace else records))
    train, evals = [], []
    for ds, records in pools:
        rng.shuffle(records)
        n_eval = round(len(records) * cfg.data.val_size)
        evals += records[:n_eval]
        train.append((ds.weight, records[n_eval:]))
    mixed = _mix(train, rng)
    if cfg.data.max_samples:
        mixed = mixed[: cfg.data.max_samples]
    if cfg.data.eval_file:
        opts = ConvertOptions()
        evals = [r for _, recs, _ in iter_converted(sources_from_paths([cfg.data.eval_file], opts), opts, report)
                 for r in recs or []]
    return mixed, evals, report.to_dict()


def _mix(pools: list[tuple[float, list[dict]]], rng: random.Random) -> list[dict]:
    """Weight 1 = every record once; other weights scale each source's count (the data engine's draw:
    without replacement while a source lasts, then with replacement)."""
    out = []
    for weight, records in pools:
        out += draw(records, round(len(records) * weight), rng)[0]
    rng.shuffle(out)
    return out


def build_rows(records: list[dict], renderer: Renderer) -> list[dict]:
    """Rendered rows (input_ids, labels); dropped records are counted in ``renderer.stats``."""
    return [r for r in renderer.render_many(records) if r is not None]


def prepare(cfg: SFTConfig, tokenizer, run_dir: Path) -> tuple[list[dict], list[dict], Renderer]:
    """Train and eval rows for a run; writes the data report to the run folder."""
    train_recs, eval_recs, conversion = load_records(cfg)
    opts = RenderOptions(max_length=cfg.data.max_length, overflow=cfg.data.overflow,
                         train_on_prompt=cfg.data.train_on_prompt, mask_history=cfg.data.mask_history)
    renderer = Renderer(tokenizer, cfg.template, opts)
    train_rows = build_rows(train_recs, renderer)
    stats = renderer.stats.to_dict()
    eval_rows = build_rows(eval_recs, renderer) if eval_recs else []
    if not train_rows:
        raise SftkitError("no training rows left after rendering (all dropped: see data_report.json)")
    report = {"conversion": conversion, "train_records": len(train_recs), "eval_records": len(eval_recs),
              "render": stats, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
              "train_tokens": sum(len(r["input_ids"]) for r in train_rows),
              "target_tokens": sum(sum(x != IGNORE for x in r["labels"]) for r in train_rows)}
    if cfg.data.packing:
        train_rows = packed_rows(train_rows, cfg.data.max_length)
        eval_rows = packed_rows(eval_rows, cfg.data.max_length) if eval_rows else []
        report["packed_rows"] = len(train_rows)
    (run_dir / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return train_rows, eval_rows, renderer
