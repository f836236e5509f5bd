"""Mix several sources into one training set, by source weight or by category share, to a target size.

Spec (YAML)::

    seed: 42
    size: 1000                      # target number of records
    categories:                     # optional: shares per category (else: by source weight)
      single-turn: 0.6
      multi-turn: 0.25
      domain: 0.15
    sources:
      - path: alpaca_zh_demo.json   # file or folder, relative to the spec; or registry: + dataset:
        weight: 2                   # by-weight mode (default 1)
        category: domain            # by-category mode; omitted -> single-turn / multi-turn / text, per record
        format: alpaca              # optional, like --format

A pool that runs out is sampled with replacement, and the report says so.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import yaml

from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths
from sftkit.errors import SftkitError
from sftkit.schema import record_kind

_SOURCE_KEYS = {"path", "paths", "weight", "category", "format", "name", "registry", "dataset"}
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
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SftkitError(f"{path}: mix spec not found") from None
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
        if unknown := set(s) - _SOURCE_KEYS:
            raise SftkitError(f"{path}: sources[{i}] has unknown key(s) {sorted(unknown)}; allowed: {sorted(_SOURCE_KEYS)}")
        w = s.get("weight", 1)
        if not isinstance(w, int | float) or isinstance(w, bool) or w < 0:
            raise SftkitError(f"{path}: sources[{i}].weight must be a number >= 0, got {w!r}")
    size = spec.get("size")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise SftkitError(f"{path}: size must be a positive integer, got {size!r}")
    return spec


def _load_source(s: dict, base: Path, opts: ConvertOptions, report: Report, rejects: list[dict]) -> list[dict]:
    from sftkit.data.registry import registry_sources

    if "dataset" in s:
        reg = base / s.get("registry", "dataset_info.json")
        sources = registry_sources(reg, [s["dataset"]], opts)
    else:
        paths = s.get("paths") or [s["path"]]
        sources = sources_from_paths([base / p for p in paths], ConvertOptions(**{**opts.__dict__, "format": s.get("format")}))
    out = []
    for _, records, rej in iter_converted(sources, opts, report):
        if records:
            out.extend(records)
        else:
            rejects.append(rej)
    return out


def _apportion(size: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``size`` by weight with largest-remainder rounding (the parts sum to ``size``)."""
    total = sum(weights.values())
    if total <= 0:
        raise SftkitError("weights (or category shares) must not all be zero")
    exact = {k: size * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: size - sum(counts.values())]:
        counts[k] += 1
    return counts


def draw(pool: list[dict], n: int, rng: random.Random) -> tuple[list[dict], int]:
    """n records from the pool: without replacement while it lasts, then with replacement."""
    if n <= len(pool):
        return rng.sample(pool, n), 0
    extra = n - len(pool)
    return list(pool) + [rng.choice(pool) for _ in range(extra)], extra


def mix(spec_path: str | Path, out: str | Path, size: int | None = None, seed: int | None = None,
        opts: ConvertOptions | None = None) -> dict:
    """Mix the spec's sources into ``out`` (JSONL); return the realized proportions and what was resampled."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    opts = opts or ConvertOptions()
    seed = spec.get("seed", 42) if seed is None else seed
    rng = random.Random(seed)
    report, rejects = Report(), []
    pools: dict[str, list[dict]] = {}
    weights: dict[str, float] = {}
    for i, s in enumerate(spec["sources"]):
        name = s.get("name") or Path(s.get("path") or s.get("dataset") or f"source{i}").stem
        if name in pools:
            name = f"{name}#{i}"
        recs = _load_source(s, spec_path.parent, opts, report, rejects)
        for r in recs:
            r["meta"]["mix_source"] = name
            r["meta"]["mix_category"] = s.get("category") or auto_category(r)
        pools[name], weights[name] = recs, s.get("weight", 1)
    size = size or spec.get("size") or sum(len(p) for p in pools.values())
    if spec.get("categories"):
        shares = {str(k): float(v) for k, v in spec["categories"].items()}
        groups: dict[str, list[dict]] = {k: [] for k in shares}
        for name, recs in pools.items():
            for r in recs:
                cat = r["meta"]["mix_category"]
                if cat not in groups:
                    raise SftkitError(f"source {name!r} has records of category {cat!r}, which has no share in "
                                      f"'categories' ({', '.join(shares)}); add it or set the source's category")
                groups[cat].append(r)
        targets, pools_used = _apportion(size, shares), groups
    else:
        targets, pools_used = _apportion(size, weights), pools
    chosen, resampled = [], {}
    for key, n in targets.items():
        pool = pools_used[key]
        if n and not pool:
            raise SftkitError(f"{key!r} should supply {n} records but has none after conversion")
        got, extra = draw(pool, n, rng)
        if extra:
            resampled[key] = {"available": len(pool), "needed": n, "drawn_with_replacement": extra}
        chosen.extend(got)
    rng.shuffle(chosen)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for r in chosen:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    rej_path = out.with_name(out.stem + ".rejects.jsonl")
    if rejects:
        with open(rej_path, "w", encoding="utf-8") as fh:
            for r in rejects:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    by_source = Counter(r["meta"]["mix_source"] for r in chosen)
    by_cat = Counter(r["meta"]["mix_category"] for r in chosen)
    return {
        "size": len(chosen), "seed": seed, "mode": "categories" if spec.get("categories") else "weights",
        "targets": targets, "resampled": resampled,
        "by_source": {k: {"count": v, "share": round(v / len(chosen), 4)} for k, v in by_source.most_common()},
        "by_category": {k: {"count": v, "share": round(v / len(chosen), 4)} for k, v in by_cat.most_common()},
        "conversion": {"read": report.total("read"), "converted": report.total("converted"),
                       "rejected": report.total("rejected")},
        "rejects_path": str(rej_path) if rejects else None,
    }
