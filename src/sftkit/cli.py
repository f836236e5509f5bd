"""The ``sftkit`` command: parses arguments and calls the same functions a Python user calls.

Exit codes: 0 success; 1 ``--strict`` found invalid records; 2 a user error (unreadable file,
unknown format, bad option), printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so 0 or -1 never silently means "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


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


def cmd_train(args) -> int:
    from sftkit.config import format_fields, load_config

    if args.help_config:
        print(format_fields(), end="")
        return 0
    if not args.config:
        raise SftkitError("sftkit train needs a config file (see examples/; `sftkit train --help-config` lists "
                          "every field)")
    cfg = load_config(args.config, args.overrides)
    from sftkit.train import run_stage

    run = run_stage(cfg)
    print(f"run folder: {run}  (final model in {run / 'final'})")
    return 0


def cmd_chat(args) -> int:
    from sftkit.infer import Chat, load_tools, repl

    tools = load_tools(args.tools) if args.tools else None
    chat = Chat(args.model, args.template, args.trust_remote_code)
    repl(chat, args.system, args.prompt, tools, opts=_generation_options(args))
    return 0


def cmd_generate(args) -> int:
    from sftkit.infer import generate_file

    n, skipped = generate_file(args.model, args.data, args.output, _generation_options(args, args.batch_size))
    print(f"wrote {n} predictions to {args.output}")
    for s in skipped[:20]:
        field = f"{s['field']}: " if s.get("field") else ""
        print(f"  skipped {s['where']}: {field}{s['reason']}", file=sys.stderr)
    if skipped:
        print(f"  {len(skipped)} record(s) skipped (reasons above; the first 20 shown)", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from sftkit.infer import export

    out = export(args.run, args.output)
    print(f"exported to {out} (loads with transformers' AutoModelForCausalLM.from_pretrained)")
    return 0


def cmd_eval(args) -> int:
    rest = args.rest
    if rest and rest[0] == "sheet":
        from sftkit.eval.human import make_sheet

        if not args.output or len(rest) < 2:
            raise SftkitError("usage: sftkit eval sheet EVAL_DIR [EVAL_DIR_B] -o review.csv")
        out = make_sheet(rest[1:], args.output, args.seed)
        print(f"wrote {out} (shuffled, models hidden; the key for unblinding is {out}.key.json: keep it from annotators)")
        return 0
    if rest and rest[0] == "human":
        from sftkit.data.report_text import kappa_text
        from sftkit.eval.human import human_scores

        if len(rest) != 3:
            raise SftkitError("usage: sftkit eval human ANNOTATOR_A.csv ANNOTATOR_B.csv")
        r = human_scores(rest[1], rest[2], args.key)
        text = "mean score per model:\n" + "\n".join(f"  {m}: {v} ({r['scored'][m]} scores)" for m, v in r["mean_score"].items())
        text += "\n" + kappa_text({**r["kappa"], "field": "score", "aligned_by": "row and response", "unmatched": 0,
                                   "skipped": {"a": [], "b": []}})
        _print(r, args.json, text)
        return 0
    if rest:
        raise SftkitError(f"unknown eval action {rest[0]!r}; use sheet, human, --compare, or --model/--data")
    if args.compare:
        from sftkit.eval.report import compare

        text, result = compare(*args.compare)
        _print(result, args.json, text)
        return 0
    from sftkit.eval.run import evaluate

    models, data, fmt = args.model or [], args.data, args.format
    max_samples, max_new, batch, stop = args.max_samples, args.max_new_tokens, args.batch_size, args.stop
    if args.config:
        from sftkit.config import load_eval_config

        ev, config_model = load_eval_config(args.config)
        models = models or [config_model]
        data, fmt = data or ev.data, fmt or ev.format
        max_samples = max_samples if max_samples is not None else ev.max_samples
        max_new = max_new if max_new is not None else ev.max_new_tokens
        batch, stop = batch if batch is not None else ev.batch_size, stop or ev.stop
    if not models or not data:
        raise SftkitError("sftkit eval needs --model and --data (or --config with an eval: section)")
    if len(models) > 2:
        raise SftkitError("give --model once, or twice to compare two models")
    if len(models) == 2 and not args.output:
        raise SftkitError("comparing two models needs -o DIR (each evaluation is written to DIR/a and DIR/b)")
    outs = [args.output] if len(models) == 1 else [str(Path(args.output) / "a"), str(Path(args.output) / "b")]
    for model, out in zip(models, outs, strict=True):
        opts = _generation_options(args, batch if batch is not None else 16, max_new_tokens=max_new, stop=stop)
        evaluate(model, data, out, fmt=fmt, max_samples=max_samples, options=opts)
        if out:
            print(f"wrote {out}/metrics.json, predictions.jsonl, report.md\n")
    if len(models) == 2:
        from sftkit.eval.report import compare

        print(compare(*outs)[0])
    return 0


def cmd_plot(args) -> int:
    from sftkit.eval.plot import plot_runs

    print(f"wrote {plot_runs(args.runs, args.output)}")
    return 0


def _add_generation_args(p: argparse.ArgumentParser, from_config: bool = False) -> None:
    """Sampling options shared by chat, generate and eval (eval: unset values come from --config)."""
    from sftkit.generation import DEFAULT_MAX_NEW_TOKENS as N

    p.add_argument("--max-new-tokens", type=_positive_int, default=None if from_config else N,
                   help=f"longest reply in tokens (default {N}{' or the config' if from_config else ''})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=_positive_int, help="sample from the k most likely tokens only (default: no limit)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end a reply before this text (repeat for several)")
    if not from_config:  # eval's --seed also shuffles review sheets
        p.add_argument("--seed", type=int, help="sampling seed (with --temperature > 0)")


def _generation_options(args, batch_size: int = 1, **fields):
    """GenerationOptions from the parsed sampling arguments; ``fields`` override them."""
    from sftkit.generation import DEFAULT_MAX_NEW_TOKENS, GenerationOptions

    given = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
             "top_k": args.top_k, "stop": list(args.stop), "seed": args.seed, "batch_size": batch_size, **fields}
    if given["max_new_tokens"] is None:
        given["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    return GenerationOptions(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftkit", description="Supervised fine-tuning toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
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

    p = sub.add_parser("train", help="fine-tune a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see examples/)")
    p.add_argument("--help-config", action="store_true",
                   help="list every config field with its type, default and description, and exit")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="e.g. train.learning_rate=1e-4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("chat", help="chat with a model or run folder (streaming)")
    p.add_argument("--model", default="sftkit-tiny", help="run folder, local model folder or sftkit-tiny")
    p.add_argument("--prompt", help="answer one prompt and exit")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--template", help="built-in chat template (default: the model's own)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--tools", metavar="FILE", help="JSON list of tool definitions the model may call")
    _add_generation_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("generate", help="reply to every prompt of a data file, write JSONL predictions")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="any data file sftkit reads")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    _add_generation_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="score a model on a data file; compare two evals; human review sheets")
    p.add_argument("rest", nargs="*", help="sheet EVAL_DIR [EVAL_DIR] | human A.csv B.csv (else: evaluate)")
    p.add_argument("--model", action="append", help="run folder, local model folder or sftkit-tiny; give it twice "
                   "(e.g. the base, then a fine-tuned run) to evaluate both and compare them")
    p.add_argument("--data", help="data file with reference replies (any format sftkit reads)")
    p.add_argument("--format", help="force the data format")
    p.add_argument("--config", help="a train config: its run folder and eval: section")
    p.add_argument("-o", "--output", help="output folder (eval) or CSV (sheet)")
    p.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"), help="side by side of two eval folders")
    p.add_argument("--max-samples", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default 16")
    _add_generation_args(p, from_config=True)
    p.add_argument("--seed", type=int, default=42, help="sheet shuffling and sampling")
    p.add_argument("--key", help="human: the sheet's .key.json (default: found next to the sheets)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="loss / eval curves of one or more runs to a PNG")
    p.add_argument("runs", nargs="+")
    p.add_argument("-o", "--output", default="curves.png")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("export", help="merge a LoRA-family run into its base and save a plain transformers model")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_export)
    return parser


def _quiet_third_party() -> None:
    """Silence notices users cannot act on (a hub-only optional CPU kernel; a deprecation inside Trainer/peft)."""
    import logging
    import warnings

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def _file_problem(e: OSError | UnicodeDecodeError) -> str:
    """One line for a file the command could not use (the safety net under each command's own checks)."""
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); give a text file"
    what = {IsADirectoryError: "is a folder, not a file", FileExistsError: "already exists and is not a folder",
            FileNotFoundError: "not found", NotADirectoryError: "a part of the path is a file, not a folder",
            PermissionError: "permission denied"}.get(type(e), e.strerror or str(e))
    return f"{e.filename}: {what}" if e.filename else f"{what} ({e})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sftkit`` console script."""
    args = build_parser().parse_args(argv)
    _quiet_third_party()
    try:
        return args.func(args)
    except SftkitError as e:
        print(f"sftkit: error: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as e:  # a file the user named is missing, a folder, not text, ...
        print(f"sftkit: error: {_file_problem(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sftkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

