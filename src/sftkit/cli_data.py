"""``sftkit data ...``: check, convert, stats, mix, kappa, formats; and the argument helpers the rest of the CLI
shares (``NAME=VALUE`` pairs, checked numbers, JSON-or-text printing). Thin: every command builds data sources
and calls the same functions a Python user calls."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sftkit.errors import SftkitError


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        for part in v.split(",") if "=" in v and "," in v else [v]:
            if "=" not in part:
                raise SftkitError(f"{what} expects NAME=VALUE, got {part!r}")
            k, _, val = part.partition("=")
            out[k.strip()] = val.strip()
    return out


def _number(kind: type, low: float, high: float | None = None):
    """An argparse type: a number of ``kind`` from ``low`` (to ``high``), so 0 or -1 never silently means
    "the default"."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}" if high is None
                                             else f"must be between {low} and {high}, got {value}")
        return value
    return parse


_positive_int = _number(int, 1)
_unit_float = _number(float, 0, 1)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help="data files or folders")
    p.add_argument("--format", help="force a source format instead of detecting it (see `sftkit data formats`)")
    p.add_argument("--map", nargs="+", metavar="FIELD=COLUMN", help="read FIELD from your COLUMN, e.g. question=query")
    p.add_argument("--registry", help="LLaMA-Factory dataset_info.json (or its folder)")
    p.add_argument("--dataset", action="append", help="dataset name(s) in the registry (repeat or comma-separate)")
    p.add_argument("--repair", action="append", choices=["alternate-roles"], default=[],
                   help="explicit, counted repairs (alternate-roles: bare-string turns alternate user/assistant)")
    p.add_argument("--speaker-map", nargs="+", metavar="SPEAKER=ROLE", help="dialog speakers to roles")
    p.add_argument("--data-root", help="media files may lie anywhere under this folder (default: the data file's folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _data_sources(args) -> list:
    """The command line's inputs as data sources (the same description train configs and mix specs use)."""
    from pydantic import ValidationError

    from sftkit.data.source import DataSource

    common = {"format": args.format, "columns": _pairs(args.map, "--map"), "repairs": list(args.repair),
              "speaker_map": _pairs(args.speaker_map, "--speaker-map"), "data_root": args.data_root}
    names = [n.strip() for d in (args.dataset or []) for n in d.split(",") if n.strip()]
    if args.registry and not names:
        raise SftkitError("--registry needs --dataset NAME")
    if names and not args.registry:
        raise SftkitError("--dataset needs --registry PATH (a LLaMA-Factory dataset_info.json)")
    try:
        out = [DataSource(path=str(f), **common) for f in args.files]
        out += [DataSource(registry=args.registry, dataset=n, **common) for n in names]
    except ValidationError as e:
        err = e.errors()[0]
        raise SftkitError(err["msg"].removeprefix("Value error, ").replace("speaker_map", "--speaker-map")) from None
    if not out:
        raise SftkitError("no input: give data files/folders or --registry PATH --dataset NAME")
    return out


def _options(args, **extra):
    from sftkit.data.pipeline import ConvertOptions

    if args.data_root and not Path(args.data_root).is_dir():
        raise SftkitError(f"--data-root {args.data_root}: no such folder")

    if args.format:
        from sftkit.data.formats import FORMATS

        if args.format not in FORMATS:
            raise SftkitError(f"unknown format {args.format!r}; known: {', '.join(sorted(FORMATS))}")
    return ConvertOptions(format=args.format, mapping=_pairs(args.map, "--map"), repairs=frozenset(args.repair),
                          speaker_map=_pairs(args.speaker_map, "--speaker-map"), data_root=args.data_root, **extra)


def _sources(args, opts):
    """The files behind the command line's data sources, read with one set of options (dedup spans them all)."""
    return [s for ds in _data_sources(args) for s in ds.sources(opts)]


def _print(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str) if as_json else text)


def cmd_check(args) -> int:
    from sftkit.data.pipeline import check_files
    from sftkit.data.report_text import check_text

    opts = _options(args)
    report = check_files(_sources(args, opts), opts)
    _print(report.to_dict(), args.json, check_text(report))
    return 1 if args.strict and report.to_dict()["invalid"] else 0


def cmd_convert(args) -> int:
    from sftkit.data.pipeline import convert_files
    from sftkit.data.report_text import check_text

    out = Path(args.output).resolve()
    rejects = Path(args.rejects).resolve() if args.rejects else out.with_name(out.stem + ".rejects.jsonl")
    if rejects == out:
        raise SftkitError(f"-o and --rejects must be different files (both are {args.output})")
    if out.is_dir():
        raise SftkitError(f"{args.output}: is a folder; -o names the JSONL file to write")
    opts = _options(args, dedup=args.dedup, near_threshold=args.near_threshold)
    report = convert_files(_sources(args, opts), args.output, args.rejects, opts)
    d = report.to_dict()
    text = check_text(report) + f"\nwrote {d['records_out']} records to {args.output}"
    if report.rejects_path:
        text += f"; {d['rejected']} rejects to {report.rejects_path}"
    if report.media_outside:
        where = args.data_root or Path(args.output).parent
        text += (f"\nnote: {report.media_outside} media path(s) lie outside {where} and were written absolute; "
                 f"read the output with --data-root {report.media_root} (or write it inside the dataset folder, or "
                 "pass --data-root, to keep it movable)")
    _print({**d, "output": args.output, "rejects_path": report.rejects_path}, args.json, text)
    return 0


def cmd_stats(args) -> int:
    from sftkit.data.pipeline import Report, iter_converted
    from sftkit.data.quality import QualityStats
    from sftkit.data.report_text import stats_text
    from sftkit.models import encoder

    opts = _options(args)
    tok = encoder(args.tokenizer) if args.tokenizer else None
    stats, report = QualityStats(tok, args.near_threshold), Report()
    for item, records, _ in iter_converted(_sources(args, opts), opts, report):
        for rec in records or []:
            stats.add(rec, f"{item.source}:{item.line if item.line is not None else item.index}")
    q = stats.result()
    _print({**q, "validation": report.to_dict()}, args.json, stats_text(q, report))
    return 0


def cmd_mix(args) -> int:
    from sftkit.data.mix import mix
    from sftkit.data.report_text import mix_text

    r = mix(args.spec, args.output, size=args.size, seed=args.seed)
    _print(r, args.json, mix_text(r) + f"\nwrote {args.output}")
    return 0


def cmd_kappa(args) -> int:
    from sftkit.data.kappa import kappa_files
    from sftkit.data.report_text import kappa_text

    r = kappa_files(args.a, args.b, args.field, args.key)
    _print(r, args.json, kappa_text(r))
    return 1 if args.strict and not r["acceptable"] else 0


def cmd_formats(args) -> int:
    from sftkit.data.formats import FORMATS

    for f in sorted(FORMATS.values(), key=lambda f: f.priority):
        print(f"  {f.name:<18} {f.doc}")
    return 0


def add_data_commands(sub) -> None:
    """The ``sftkit data`` subcommands on the top-level subparsers."""
    data = sub.add_parser("data", help="read, check, convert, measure and mix SFT data").add_subparsers(
        dest="data_command", required=True)

    p = data.add_parser("check", help="detected format, valid/invalid counts, warnings, first errors")
    _add_input_args(p)
    p.add_argument("--strict", action="store_true", help="exit 1 if any record is invalid")
    p.set_defaults(func=cmd_check)

    p = data.add_parser("convert", help="write canonical JSONL; rejects go to a rejects file with reasons")
    _add_input_args(p)
    p.add_argument("-o", "--output", required=True, help="canonical JSONL to write")
    p.add_argument("--rejects", help="rejects JSONL (default: OUTPUT stem + .rejects.jsonl)")
    p.add_argument("--dedup", choices=["exact", "near"], help="drop duplicates (they go to the rejects file)")
    p.add_argument("--near-threshold", type=_unit_float, default=0.7, help="Jaccard similarity for --dedup near")
    p.set_defaults(func=cmd_convert)

    p = data.add_parser("stats", help="quality report: lengths, duplicates, noise, languages")
    _add_input_args(p)
    p.add_argument("--tokenizer", help="local tokenizer (folder or tokenizer.json) to add token lengths")
    p.add_argument("--near-threshold", type=_unit_float, default=0.7, help="Jaccard similarity for near-duplicates")
    p.set_defaults(func=cmd_stats)

    p = data.add_parser("mix", help="mix sources by weight or category share to a target size")
    p.add_argument("spec", help="mix spec YAML")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--size", type=_positive_int, help="override the spec's size")
    p.add_argument("--seed", type=int, help="override the spec's seed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mix)

    p = data.add_parser("kappa", help="Cohen's kappa between two annotators' labels")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--field", required=True, help="label field (dotted path allowed, e.g. meta.label)")
    p.add_argument("--key", help="field that identifies a record in both files (default: `id` when every record of both files has one, else position)")
    p.add_argument("--strict", action="store_true", help="exit 1 when kappa is not above 0.8")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kappa)

    p = data.add_parser("formats", help="list the source formats sftkit reads")
    p.set_defaults(func=cmd_formats)
