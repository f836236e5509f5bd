"""Read -> map columns -> detect -> convert -> validate -> dedup, with exact accounting per file.

Every record read ends up either converted or rejected with a reason (file, line, index, field), so
``read == converted + rejected`` always holds and is reported. Whatever a record holds (lone surrogates,
NaN, 5000-digit integers, deep nesting), it is converted or rejected: every converted record is valid
UTF-8 JSON (``allow_nan=False``), checked here so ``check``, ``convert`` and training agree.

Lineage: every converted record gets ``origin`` = ``{"file", "line", "index"}`` of the item it was read
from (all records made from one item share it), unless the item already holds a valid ``origin``.

``convert_files`` writes media paths relative to the data root (``data_root``, by default the common
folder of the data files) and nothing else changes, so re-converting its output (the ``canonical``
format) gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sftkit.data.dedup import Deduper
from sftkit.data.formats import FORMATS, Ctx, Options, detect_format
from sftkit.data.readers import Item, _suffix, expand_paths, iter_file
from sftkit.data.validate import validate
from sftkit.data.writing import reject_line, relative_media, writable
from sftkit.errors import RecordError, SftkitError
from sftkit.progress import progress
from sftkit.schema import origin, valid_origin

_PEEK = 50  # records looked at to detect a file's format


@dataclass
class ConvertOptions:
    """What the user chose for a conversion run (CLI flags map one to one)."""

    format: str | None = None  # force a format instead of detecting it
    mapping: dict[str, str] = field(default_factory=dict)  # expected field -> the user's column (--map)
    repairs: frozenset[str] = frozenset()  # explicit repairs, e.g. {"alternate-roles"}
    speaker_map: dict[str, str] = field(default_factory=dict)  # dialog speaker -> role
    dedup: str | None = None  # None | "exact" | "near"
    near_threshold: float = 0.7  # Jaccard similarity above which two records are near-duplicates
    data_root: str | None = None  # media files must lie under this folder (default: the data file's folder)
    max_errors: int = 20  # errors kept per file in the report
    prompts: bool = False  # generation input: conversations may end with a user turn (kept, not dropped)


@dataclass
class Source:
    """One file to convert and how: a format (or None to detect) and converter options."""

    path: Path
    format: str | None = None
    options: Options = field(default_factory=Options)
    select: Callable[[list], list] | None = None  # registry num_samples / split, applied to converted items
    name: str | None = None  # registry dataset name


@dataclass
class FileReport:
    """Accounting and problems of one source file."""

    source: str
    format: str | None = None
    detected: bool = True
    read: int = 0
    converted: int = 0
    rejected: int = 0
    duplicates: int = 0
    records_out: int = 0
    sampled_out: int = 0
    warnings: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    other_formats: Counter = field(default_factory=Counter)  # records of a mixed file read in their own format
    errors: list[dict] = field(default_factory=list)
    warning_examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["validation_rate"] = self.validation_rate
        d["warnings"], d["repairs"], d["other_formats"] = dict(self.warnings), dict(self.repairs), dict(self.other_formats)
        return d

    @property
    def validation_rate(self) -> float:
        """Share of records read that converted and passed validation (duplicates count as valid)."""
        return (self.converted + self.duplicates) / self.read if self.read else 1.0


@dataclass
class Report:
    """Accounting of a whole run: one FileReport per source plus totals."""

    files: list[FileReport] = field(default_factory=list)
    rejects_path: str | None = None  # where convert wrote the rejects (None when there were none)
    media_outside: int = 0  # media paths convert wrote absolute: they lie outside the output's folder
    media_root: str | None = None  # then: the --data-root a re-read of the output needs

    def total(self, key: str) -> int:
        return sum(getattr(f, key) for f in self.files)

    @property
    def warnings(self) -> Counter:
        return sum((f.warnings for f in self.files), Counter())

    @property
    def balanced(self) -> bool:
        return all(f.read == f.converted + f.rejected for f in self.files)

    def to_dict(self) -> dict:
        read = self.total("read")
        valid = self.total("converted") + self.total("duplicates")
        return {
            "files": [f.to_dict() for f in self.files],
            "read": read, "converted": self.total("converted"), "rejected": self.total("rejected"),
            "duplicates": self.total("duplicates"), "records_out": self.total("records_out"),
            "valid": valid, "invalid": read - valid, "validation_rate": valid / read if read else 1.0,
            "warnings": dict(self.warnings), "balanced": self.balanced,
            **({"media_outside": self.media_outside, "media_root": self.media_root} if self.media_outside else {}),
        }


def sources_from_paths(paths: list, opts: ConvertOptions) -> list[Source]:
    """Plain files / folders -> Sources with the user's options."""
    if opts.format and opts.format not in FORMATS:
        raise SftkitError(f"unknown format {opts.format!r}; known: {', '.join(sorted(FORMATS))}")
    options = Options(repairs=frozenset(opts.repairs), speaker_map=dict(opts.speaker_map), prompts=opts.prompts)
    return [Source(p, opts.format, options) for p in expand_paths(paths)]


def _apply_mapping(raw: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return raw
    out = {k: v for k, v in raw.items() if k not in mapping.values()}
    for want, have in mapping.items():
        if have in raw:
            out[want] = raw[have]
    return out


def _reject(item: Item, fld: str, reason: str) -> dict:
    raw = item.raw if item.raw is not None else item.text
    return {"source": item.source, "line": item.line, "index": item.index, "field": fld, "reason": reason, "raw": raw}


def _detect(items: list[Item], src: Source, mapping: dict) -> tuple[str | None, bool]:
    if src.format:
        return src.format, False
    votes = Counter(detect_format(_apply_mapping(it.raw, mapping)) for it in items if it.error is None)
    votes.pop(None, None)
    if votes:
        return votes.most_common(1)[0][0], True
    first = next((it for it in items if it.error is None), None)
    if first is None:
        return None, True  # nothing parsable: every record is rejected by line
    keys = ", ".join(sorted(map(str, first.raw))[:12]) or "(none)"
    raise SftkitError(f"{src.path}: cannot detect the data format from the keys of the first record ({keys}); "
                      f"pass --format (one of {', '.join(sorted(FORMATS))}) or --map FIELD=COLUMN")


def _record_format(item: Item, opts: ConvertOptions):
    """The format of one record, for files whose first records could not be parsed at all."""
    if item.error is not None:
        return None
    name = detect_format(_apply_mapping(item.raw, opts.mapping))
    return FORMATS[name] if name else None


def _convert_validate(fmt, raw: dict, ctx: Ctx, base: str, opts: ConvertOptions, item: Item,
                      check: bool = True) -> list[dict]:
    out = fmt.convert(raw, ctx)
    records = out if isinstance(out, list) else [out]
    given = raw.get("origin")
    lineage = given if given is not None and valid_origin(given) else origin(item.source, item.line, item.index)
    for k, rec in enumerate(records):
        validate(rec, ctx, base, opts.data_root, prompts=opts.prompts)
        rec["origin"] = lineage if k == 0 and lineage is not given else dict(lineage)
        if check:
            writable(rec)
    return records


# Readers that decode strict JSON or UTF-8 text: NaN / Infinity, lone surrogates and over-long integers are
# refused when read, and converters build records from the values read (embedded JSON goes through the strict
# ``base.loads``), so their records need no second, whole-record check. Parquet can hold NaN: it is checked.
STRICT_READERS = frozenset({".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt"})


def convert_item(item: Item, fmt, src: Source, opts: ConvertOptions, base: str, rep: FileReport,
                 check: bool = True):
    """Convert and validate one item; return (records, None) or (None, reject).

    ``check=False`` skips the strict-JSON check of the result (see :data:`STRICT_READERS`)."""
    if item.error is not None:
        return None, _reject(item, "", item.error)
    if fmt is None:
        keys = ", ".join(sorted(map(str, item.raw))[:12]) or "(none)"
        return None, _reject(item, "", f"cannot detect the data format from the keys ({keys}); pass --format")
    raw = _apply_mapping(item.raw, opts.mapping)
    ctx = Ctx(src.options)
    try:
        records = _convert_validate(fmt, raw, ctx, base, opts, item, check)
    except RecursionError:
        return None, _reject(item, "", "record is nested too deeply")
    except RecordError as e:
        # a detected format may not fit every record of a mixed file: try the record's own format
        alt = detect_format(raw) if rep.detected else None
        if alt is None or alt == fmt.name:
            return None, _reject(item, e.field, e.reason)
        ctx = Ctx(src.options)
        try:
            records = _convert_validate(FORMATS[alt], raw, ctx, base, opts, item, check)
        except RecursionError:
            return None, _reject(item, "", "record is nested too deeply")
        except RecordError as e2:
            return None, _reject(item, e2.field, e2.reason)
        rep.other_formats[alt] += 1
    for kind, fld, msg in ctx.warnings:
        rep.warnings[kind] += 1
        if len(rep.warning_examples) < opts.max_errors:
            rep.warning_examples.append({"line": item.line, "index": item.index, "field": fld, "kind": kind, "message": msg})
    for r in ctx.repairs:
        rep.repairs[r] += 1
    return records, None


def iter_converted(sources: list[Source], opts: ConvertOptions,
                   report: Report) -> Iterator[tuple[Item, list[dict] | None, dict | None]]:
    """Yield ``(item, records, None)`` or ``(item, None, reject)`` for every record of every source, in order."""
    deduper = Deduper(opts.dedup, opts.near_threshold) if opts.dedup else None
    for src in sources:
        rep = FileReport(str(src.path) if src.name is None else f"{src.name} ({src.path})")
        report.files.append(rep)
        check = _suffix(Path(src.path)) not in STRICT_READERS
        stream = iter_file(src.path)
        head = [it for _, it in zip(range(_PEEK), stream, strict=False)]
        name, rep.detected = _detect(head, src, opts.mapping)
        rep.format = name
        fmt = FORMATS[name] if name else None
        base = str(Path(src.path).parent)
        kept: list = []
        with progress(f"reading {Path(src.path).name}") as tick:
            for item in _chain(head, stream):
                rep.read += 1
                tick()
                records, rej = convert_item(item, fmt or _record_format(item, opts), src, opts, base, rep, check)
                if records is not None and deduper is not None:
                    dup_of = deduper.check(records, f"{item.source}:{item.line or item.index}")
                    if dup_of:
                        rep.duplicates += 1
                        rep.rejected += 1
                        yield item, None, _reject(item, "", f"{opts.dedup} duplicate of {dup_of}")
                        continue
                if rej is not None:
                    rep.rejected += 1
                    if len(rep.errors) < opts.max_errors:
                        rep.errors.append({k: rej[k] for k in ("line", "index", "field", "reason")})
                    yield item, None, rej
                    continue
                rep.converted += 1
                if src.select:
                    kept.append((item, records))
                else:
                    rep.records_out += len(records)
                    yield item, records, None
        if src.select:
            chosen = src.select(kept)
            rep.sampled_out = len(kept) - len(chosen)
            for item, records in chosen:
                rep.records_out += len(records)
                yield item, records, None


def _chain(head: list[Item], rest: Iterator[Item]) -> Iterator[Item]:
    yield from head
    yield from rest


def check_files(sources: list[Source], opts: ConvertOptions) -> Report:
    """Convert without writing; return the accounting and problems."""
    report = Report()
    for _ in iter_converted(sources, opts, report):
        pass
    return report


def convert_files(sources: list[Source], out: str | Path, rejects: str | Path | None, opts: ConvertOptions) -> Report:
    """Write canonical JSONL to ``out`` and rejects (``{source, line, index, field, reason, raw}``) beside it.

    Media paths are written relative to the data root (``opts.data_root``, by default the output's folder), so a
    dataset folder can move as a whole; a re-read resolves a relative path against the file's own folder, then
    against its data root (``--data-root``). Media outside the root are written absolute and counted
    (``report.media_outside``; re-read them with ``--data-root`` = ``report.media_root``). The files appear only
    when the run completes (no ``*.tmp`` is left behind)."""
    out = Path(out)
    rejects = Path(rejects) if rejects else out.with_name(out.stem + ".rejects.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    report = Report()
    tmp_out, tmp_rej = out.with_name(out.name + ".tmp"), rejects.with_name(rejects.name + ".tmp")
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    root, outside = os.path.realpath(opts.data_root or out.parent), []
    try:
        with open(tmp_out, "w", encoding="utf-8") as fo, open(tmp_rej, "w", encoding="utf-8") as fr:
            for _, records, rej in iter_converted(sources, opts, report):
                if rej is None:
                    for rec in records:
                        fo.write(encode(relative_media(rec, root, outside)) + "\n")
                else:
                    fr.write(reject_line(rej) + "\n")
        os.replace(tmp_out, out)
        if report.total("rejected"):
            os.replace(tmp_rej, rejects)
        elif rejects.exists():
            rejects.unlink()  # a stale rejects file from an earlier run would mislead
    finally:
        for tmp in (tmp_out, tmp_rej):
            tmp.unlink(missing_ok=True)
    report.rejects_path = str(rejects) if report.total("rejected") else None
    report.media_outside = len(outside)
    if outside:  # where a re-read must be allowed to look
        report.media_root = os.path.commonpath([os.path.dirname(p) for p in outside])
    return report
