"""Mix several sources into one training set, by source weight or by category share, to a target size.

Spec (YAML)::

    seed: 42
    size: 1000                      # target number of records (default: what the weights give)
    categories:                     # optional: shares per category (else: by source weight)
      single-turn: 0.6
      multi-turn: 0.25
      domain: 0.15
    sources:
      - path: alpaca_zh_demo.json   # file or folder, relative to the spec; or registry: + dataset:
        weight: 2                   # by-weight mode: a sampling multiplier (default 1 = every record once)
        category: domain            # by-category mode; omitted -> single-turn / multi-turn / text, per record
        format: alpaca              # any key of a data source (sftkit.data.source.DataSource): format, columns,
                                    # speaker_map, repairs, data_root, replace, split, name; `paths` for several files

Each source is read by the one loader (:mod:`sftkit.data.source`), and ``weight`` means what it means in a train
config: a source contributes ``weight x its record count``; with ``size``, every contribution is scaled by the
same factor so they sum to ``size``. A pool that runs out is sampled with replacement, and the report says so.
Records keep their ``origin`` (file, line) and get ``meta.mix_source`` / ``meta.mix_category``; media paths
are written as ``sftkit data convert`` writes them (relative to the output's folder when under it).
"""

from __future__ import annotations

import difflib
import json
import os
import random
from collections import Counter
from pathlib import Path

import yaml
from pydantic import ValidationError

from sftkit.data.formats.base import put_meta
from sftkit.data.pipeline import ConvertOptions, Report
from sftkit.data.source import DataSource, apportion, load, weighted
from sftkit.data.writing import relative_media
from sftkit.errors import SftkitError
from sftkit.files import read_text
from sftkit.schema import record_kind

_SPEC_KEYS = {"seed", "size", "categories", "sources"}
# other spellings people use for the same keys
_SPEC_ALIASES = {"target_size": "size", "total": "size", "n": "size", "num_samples": "size",
                 "category_shares": "categories", "shares": "categories", "datasets": "sources"}
_SOURCE_ALIASES = {"file": "path", "files": "paths", "ratio": "weight", "share": "weight", "type": "category"}


def _canonical_keys(d: dict, aliases: dict[str, str]) -> dict:
    return {aliases.get(k, k): v for k, v in d.items()}


def auto_category(rec: dict) -> str:
    """single-turn / multi-turn by the number of assistant turns; text for pre-training records."""
    if record_kind(rec) == "text":
        return "text"
    return "multi-turn" if sum(m["role"] == "assistant" for m in rec["messages"]) > 1 else "single-turn"


def load_spec(path: str | Path) -> dict:
    """Read and check a mix spec; unknown keys and bad values are errors that say what to change."""
    path = Path(path)
    try:
        spec = yaml.safe_load(read_text(path, "mix spec"))
    except yaml.YAMLError as e:
        raise SftkitError(f"{path}: not valid YAML ({e})") from None
    if isinstance(spec, dict):
        spec = _canonical_keys(spec, _SPEC_ALIASES)
        if isinstance(spec.get("sources"), list):
            spec["sources"] = [_canonical_keys(s, _SOURCE_ALIASES) if isinstance(s, dict) else s for s in spec["sources"]]
    if not isinstance(spec, dict) or not isinstance(spec.get("sources"), list) or not spec["sources"]:
        raise SftkitError(f"{path}: a mix spec needs a non-empty 'sources' list")
    if unknown := set(spec) - _SPEC_KEYS:
        raise SftkitError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    for i, s in enumerate(spec["sources"]):
        if not isinstance(s, dict) or not ({"path", "paths", "dataset"} & set(s)):
            raise SftkitError(f"{path}: sources[{i}] needs 'path' (or 'paths', or 'registry' + 'dataset')")
        w = s.get("weight", 1)
        if not isinstance(w, int | float) or isinstance(w, bool) or not 0 <= w <= 1e6:
            raise SftkitError(f"{path}: sources[{i}].weight must be a number from 0 to 1e6, got {w!r}")
        _data_sources(s, i, path)  # every other key is checked as a data source
    size = spec.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise SftkitError(f"{path}: size must be a positive integer, got {size!r}")
    return spec


def _data_sources(s: dict, i: int, spec_path: Path) -> list[DataSource]:
    """A spec entry as data sources (``paths`` gives one per path), paths taken from the spec's folder."""
    entry = {k: v for k, v in s.items() if k != "paths"}
    paths = s.get("paths")
    if paths is not None and (not isinstance(paths, list) or not paths):
        raise SftkitError(f"{spec_path}: sources[{i}].paths must be a non-empty list")
    out = []
    for p in paths or [None]:
        raw = {**entry, "path": p} if p is not None else entry
        try:
            out.append(DataSource.model_validate(raw).resolved(spec_path.parent))
        except ValidationError as e:
            err = e.errors()[0]
            where = "".join(f".{x}" for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                key, options = str(err["loc"][-1]), [*DataSource.model_fields, "paths"]
                close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(sorted(options))}"
                raise SftkitError(f"{spec_path}: sources[{i}] has unknown key {key!r}{hint}") from None
            raise SftkitError(f"{spec_path}: sources[{i}]{where}: {msg}") from None
    return out


def mix(spec_path: str | Path, out: str | Path, size: int | None = None, seed: int | None = None,
        opts: ConvertOptions | None = None) -> dict:
    """Mix the spec's sources into ``out`` (JSONL); return the realized proportions and what was resampled."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    seed = spec.get("seed", 42) if seed is None else seed
    rng = random.Random(seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects_path = out.with_name(out.stem + ".rejects.jsonl")
    rejects_path.unlink(missing_ok=True)  # a stale rejects file from an earlier run would mislead
    report = Report()
    pools: dict[str, list[tuple]] = {}
    weights: dict[str, float] = {}
    for i, s in enumerate(spec["sources"]):
        name = s.get("name") or Path(s.get("path") or s.get("dataset") or f"source{i}").stem
        if name in pools:
            name = f"{name}#{i}"
        part = rejects_path.with_name(f"{rejects_path.name}.{i}.part")
        extra = {"dedup": opts.dedup, "near_threshold": opts.near_threshold} if opts and opts.dedup else {}
        try:
            recs = [r for pool in load(_data_sources(s, i, spec_path), seed=seed, report=report, rejects=part,
                                       **extra) for r in pool.records]
        finally:
            _append(part, rejects_path)
        tagged = []
        for r in recs:  # (source name, category, record): the mix's own bookkeeping, never read back from meta
            cat = s.get("category") or auto_category(r)
            put_meta(r["meta"], "mix_source", name, None)
            put_meta(r["meta"], "mix_category", cat, None)
            tagged.append((name, cat, r))
        pools[name], weights[name] = tagged, s.get("weight", 1)
    size = size or spec.get("size")
    if spec.get("categories"):
        chosen, targets, resampled = _by_category(pools, weights, spec["categories"], size, rng)
    else:
        chosen, targets, resampled = weighted(pools, weights, rng, size)
    out_root, outside = os.path.realpath(out.parent), []
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for _, _, r in chosen:
                fh.write(json.dumps(relative_media(r, out_root, outside), ensure_ascii=False, allow_nan=False) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    by_source = Counter(name for name, _, _ in chosen)
    by_cat = Counter(cat for _, cat, _ in chosen)
    n = max(len(chosen), 1)
    return {
        "size": len(chosen), "seed": seed, "mode": "categories" if spec.get("categories") else "weights",
        "targets": targets, "resampled": resampled,
        "by_source": {k: {"count": v, "share": round(v / n, 4)} for k, v in by_source.most_common()},
        "by_category": {k: {"count": v, "share": round(v / n, 4)} for k, v in by_cat.most_common()},
        "conversion": {"read": report.total("read"), "converted": report.total("converted"),
                       "rejected": report.total("rejected")},
        "rejects_path": str(rejects_path) if rejects_path.exists() else None,
        # media under the output's folder are written relative to it; others absolute (re-read with --data-root)
        "media_outside": len(outside),
        "media_root": os.path.commonpath([os.path.dirname(p) for p in outside]) if outside else None,
    }


def _by_category(pools: dict[str, list[tuple]], weights: dict[str, float], categories: dict, size: int | None,
                 rng: random.Random):
    """Draw ``size`` records split by category shares; inside a category the sources' weights apply as
    everywhere (a multiplier on each source's count, rescaled to the category's share).
    Returns (records, count per category, what was resampled)."""
    shares = {str(k): float(v) for k, v in categories.items()}
    groups: dict[str, dict[str, list[tuple]]] = {k: {} for k in shares}
    for name, recs in pools.items():
        for t in recs:
            cat = t[1]
            if cat not in groups:
                raise SftkitError(f"source {name!r} has records of category {cat!r}, which has no share in "
                                  f"'categories' ({', '.join(shares)}); add it or set the source's category")
            groups[cat].setdefault(name, []).append(t)
    targets = apportion(size or sum(len(p) for p in pools.values()), shares)
    chosen, resampled = [], {}
    for key, n in targets.items():
        by_source = {name: recs for name, recs in groups[key].items() if weights[name] > 0}
        if n and not by_source:
            raise SftkitError(f"{key!r} should supply {n} records but has none after conversion (or only "
                              "sources of weight 0)")
        if not n:
            continue
        got, _, extra = weighted(by_source, {k: weights[k] for k in by_source}, rng, n)
        drawn = sum(e["drawn_with_replacement"] for e in extra.values())
        if drawn:
            resampled[key] = {"available": sum(len(v) for v in by_source.values()), "needed": n,
                              "drawn_with_replacement": drawn}
        chosen.extend(got)
    rng.shuffle(chosen)
    return chosen, targets, resampled


def _append(part: Path, dest: Path) -> None:
    """Move one source's rejects into the mix's rejects file."""
    if part.exists():
        with open(dest, "a", encoding="utf-8") as fo:
            fo.write(part.read_text(encoding="utf-8"))
        part.unlink()
