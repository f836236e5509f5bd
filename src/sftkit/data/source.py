"""One description of a data source and one loader, used by train, eval, mix, generate and the CLI.

A :class:`DataSource` names where records come from (a file or folder, or a LLaMA-Factory registry entry) and how
to read them (format, column map, speaker map, repairs, data root), plus how much of it to use (``split``,
``weight``) and text substitutions (``replace``). :func:`iter_source` streams its records through the data
engine (read -> convert -> validate), :func:`load` collects them, and :func:`weighted` draws a mix.

**weight** means the same everywhere (train configs and ``sftkit data mix``): a sampling multiplier on the
source's own record count. ``1`` = every record once, ``0.5`` = a random half, ``2`` = every record twice
(records are drawn without replacement while the source lasts, then with replacement). When a target ``size``
is given (``sftkit data mix``), every source's count is scaled by the same factor so the parts sum to ``size``
(largest-remainder rounding), so the proportions stay those the weights give.

Every record keeps its ``origin`` (file, line, index) through loading, mixing, splitting and rendering.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sftkit.data.pipeline import ConvertOptions, Report, Source, iter_converted, sources_from_paths
from sftkit.data.writing import reject_line
from sftkit.errors import SftkitError


class DataSource(BaseModel):
    """Where records come from, how to read them, and how much of them to use."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    path: str | None = Field(None, description="data file or folder (relative paths resolve from the config file)")
    registry: str | None = Field(None, description="LLaMA-Factory dataset_info.json (or its folder) holding `dataset`")
    dataset: str | None = Field(None, description="entry name in `registry`")
    name: str | None = Field(None, description="short name in reports (default: the file stem or dataset name)")
    format: str | None = Field(None, description="force a source format (default: detected per file); "
                               "`sftkit data formats` lists them")
    columns: dict[str, str] = Field({}, description="field the format expects -> your column, e.g. "
                                     "{question: query} (same as --map)")
    speaker_map: dict[str, str] = Field({}, description="dialog speaker -> role (user, assistant, system)")
    repairs: list[Literal["alternate-roles"]] = Field([], description="explicit, counted repairs, e.g. "
                                                      "alternate-roles: bare-string turns alternate user/assistant")
    data_root: str | None = Field(None, description="media files may lie anywhere under this folder "
                                  "(default: the data file's folder)")
    weight: float = Field(1.0, ge=0, allow_inf_nan=False, le=1e6, description="sampling multiplier on this source's record count: 1 = every "
                          "record once, 0.5 = a random half, 2 = every record twice")
    replace: dict[str, str] = Field({}, description="text substitutions in every string, e.g. "
                                    "{'{{name}}': 'Aurora'} for identity data")
    split: str | None = Field(None, description="a slice of the converted records in file order, as "
                              "LLaMA-Factory writes it: train[:100], train[10%:], train[-50:]")
    category: str | None = Field(None, description="`sftkit data mix` by category: this source's category")

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.path) == bool(self.dataset):
            raise ValueError("give either `path` or `registry` + `dataset`")
        if self.dataset and not self.registry:
            raise ValueError(f"dataset {self.dataset!r} needs `registry` (a LLaMA-Factory dataset_info.json)")
        bad = {k: v for k, v in self.speaker_map.items() if v not in ("user", "assistant", "system")}
        if bad:
            raise ValueError(f"speaker_map roles must be user, assistant or system, got {bad}")
        if self.split is not None:
            from sftkit.data.registry import _selector

            try:
                _selector(self.label, self.split, None, 0)
            except SftkitError as e:
                raise ValueError(str(e)) from None
        return self

    @property
    def label(self) -> str:
        """The name reports use for this source."""
        if self.name:
            return self.name
        return self.dataset or Path(self.path or "").name

    def resolved(self, base: str | Path) -> DataSource:
        """A copy whose relative paths (path, registry, data_root) are taken from ``base``."""
        base = Path(base)
        upd = {k: str(base / v) for k in ("path", "registry", "data_root")
               if (v := getattr(self, k)) and not Path(v).is_absolute()}
        return self.model_copy(update=upd)

    def options(self, **extra) -> ConvertOptions:
        """Converter options for this source (plus run-wide ones such as dedup)."""
        return ConvertOptions(format=self.format, mapping=dict(self.columns), repairs=frozenset(self.repairs),
                              speaker_map=dict(self.speaker_map), data_root=self.data_root, **extra)

    def sources(self, opts: ConvertOptions, seed: int = 42) -> list[Source]:
        """The files behind this source, each with its format and converter options."""
        from sftkit.data.registry import _selector, registry_sources

        if self.dataset:
            found = registry_sources(self.registry, [self.dataset], opts, seed=seed)
        else:
            found = sources_from_paths([self.path], opts)
        if self.split is not None:
            select = _selector(self.label, self.split, None, seed)
            for s in found if select is not None else []:
                s.select = select if s.select is None else (lambda items, a=s.select, b=select: b(a(items)))
        return found


@dataclass
class Pool:
    """The converted records of one source, and its accounting."""

    source: DataSource
    records: list[dict] = field(default_factory=list)
    read: int = 0
    rejected: int = 0


def iter_source(ds: DataSource, report: Report, *, seed: int = 42, purpose: str = "train",
                **options) -> Iterator[tuple[list[dict] | None, dict | None]]:
    """Stream ``(records, None)`` or ``(None, reject)`` for every record read from one source, in file order.

    ``purpose="prompts"`` keeps conversations that end with a user turn (generation input) instead of
    dropping the unanswered turn. ``replace`` substitutions are applied to converted records.
    """
    opts = ds.options(prompts=purpose == "prompts", **options)
    for _, records, rej in iter_converted(ds.sources(opts, seed), opts, report):
        if rej is not None:
            rej.setdefault("dataset", ds.label)
            yield None, rej
        else:
            yield ([_replace(r, ds.replace) for r in records] if ds.replace else records), None


def load(sources: list[DataSource], *, seed: int = 42, purpose: str = "train", report: Report | None = None,
         rejects: str | Path | None = None, **options) -> list[Pool]:
    """Read every source into memory (one :class:`Pool` each); rejects are streamed to ``rejects`` (JSONL) when given.

    Raises SftkitError when a source yields no usable record, naming the source and where its rejects are."""
    report = report if report is not None else Report()
    pools = []
    sink = _RejectSink(rejects)
    try:
        for ds in sources:
            pool = Pool(ds)
            for records, rej in iter_source(ds, report, seed=seed, purpose=purpose, **options):
                pool.read += 1
                if rej is not None:
                    pool.rejected += 1
                    sink.write(rej)
                else:
                    pool.records.extend(records)
            if not pool.records:
                where = f"; the reasons are in {rejects}" if rejects and pool.rejected else ""
                raise SftkitError(f"data source {ds.label}: no usable records ({pool.read} read, {pool.rejected} "
                                  f"rejected){where}; run `sftkit data check` on it")
            pools.append(pool)
    finally:
        sink.close()
    return pools


class _RejectSink:
    """Append rejects to a JSONL file (created on the first reject), or keep nothing when there is no file."""

    def __init__(self, path: str | Path | None):
        self.path, self.fh = (Path(path) if path else None), None

    def write(self, rej: dict) -> None:
        if self.path is None:
            return
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self.fh.write(reject_line(rej) + "\n")

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _replace(obj, subs: dict[str, str]):
    if isinstance(obj, str):
        for k, v in subs.items():
            obj = obj.replace(k, v)
        return obj
    if isinstance(obj, list):
        return [_replace(x, subs) for x in obj]
    if isinstance(obj, dict):
        return {k: (v if k == "origin" else _replace(v, subs)) for k, v in obj.items()}
    return obj


def apportion(size: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``size`` in proportion to ``weights`` with largest-remainder rounding (the parts sum to ``size``)."""
    total = sum(weights.values())
    if total <= 0:
        raise SftkitError("weights (or category shares) must not all be zero")
    exact = {k: size * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: size - sum(counts.values())]:
        counts[k] += 1
    return counts


def draw(pool: list, n: int, rng: random.Random) -> tuple[list, int]:
    """n records from the pool: without replacement while it lasts, then with replacement (returns the extra count)."""
    if n <= len(pool):
        return rng.sample(pool, n), 0
    if not pool:
        return [], 0
    extra = n - len(pool)
    return list(pool) + [rng.choice(pool) for _ in range(extra)], extra


def weighted_counts(sizes: dict[str, int], weights: dict[str, float], size: int | None = None) -> dict[str, int]:
    """How many records each source contributes: ``weight x its count``, rescaled to ``size`` when given.

    Without ``size`` the total is ``weight x count`` summed and rounded half up, split with largest remainders,
    so fractional parts are not lost one source at a time (one record at weight 0.5 still gives one)."""
    wanted = {k: sizes[k] * weights[k] for k in sizes}
    if size is None:
        size = int(sum(wanted.values()) + 0.5)
        if size == 0:
            return dict.fromkeys(wanted, 0)
    return apportion(size, wanted)


def weighted(pools: dict[str, list], weights: dict[str, float], rng: random.Random,
             size: int | None = None) -> tuple[list, dict[str, int], dict[str, dict]]:
    """Draw the weighted mix (shuffled): (records, count per source, what was drawn with replacement)."""
    counts = weighted_counts({k: len(v) for k, v in pools.items()}, weights, size)
    chosen, resampled = [], {}
    for key, n in counts.items():
        got, extra = draw(pools[key], n, rng)
        if extra:
            resampled[key] = {"available": len(pools[key]), "needed": n, "drawn_with_replacement": extra}
        chosen.extend(got)
    rng.shuffle(chosen)
    return chosen, counts, resampled
