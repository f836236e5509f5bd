"""The ``sftkit`` command: parses arguments and calls the same functions a Python user calls.

Exit codes: 0 success; 1 ``--strict`` found invalid records; 2 a user error (unreadable file,
unknown format, bad option), printed as one line without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sftkit.cli_data import _positive_int, _print, add_data_commands
from sftkit.errors import SftkitError


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
    from sftkit.models import resolve

    print(f"run folder: {run}  (final model in {resolve(str(run))})")
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
    samples, temperature, top_p = args.samples, args.temperature, args.top_p
    if args.config:
        from sftkit.config import load_eval_config

        ev, config_model = load_eval_config(args.config)
        models = models or [config_model]
        data, fmt = data or ev.data, fmt or ev.format
        max_samples = max_samples if max_samples is not None else ev.max_samples
        max_new = max_new if max_new is not None else ev.max_new_tokens
        batch, stop = batch if batch is not None else ev.batch_size, stop or ev.stop
        samples = samples if samples is not None else ev.samples
        temperature = temperature if temperature is not None else ev.temperature
        top_p = top_p if top_p is not None else ev.top_p
    if not models or not data:
        raise SftkitError("sftkit eval needs --model and --data (or --config with an eval: section)")
    if len(models) > 2:
        raise SftkitError("give --model once, or twice to compare two models")
    if len(models) == 2 and not args.output:
        raise SftkitError("comparing two models needs -o DIR (each evaluation is written to DIR/a and DIR/b)")
    outs = [args.output] if len(models) == 1 else [str(Path(args.output) / "a"), str(Path(args.output) / "b")]
    for model, out in zip(models, outs, strict=True):
        opts = _generation_options(args, batch if batch is not None else 16, max_new_tokens=max_new, stop=stop,
                                   n=samples or 1, temperature=temperature, top_p=top_p)
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
    p.add_argument("--temperature", type=float, default=None if from_config else 0.0,
                   help=f"0 = greedy (default 0{' or the config' if from_config else ''})")
    p.add_argument("--top-p", type=float, default=None if from_config else 1.0,
                   help=f"nucleus sampling (default 1{' or the config' if from_config else ''})")
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
    unset = [k for k in ("temperature", "top_p") if given[k] is None]  # eval: neither flag nor config gave one
    return GenerationOptions(**{k: v for k, v in given.items() if k not in unset})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftkit", description="Supervised fine-tuning toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_commands(sub)

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
    p.add_argument("--samples", type=_positive_int, default=None, help="answers sampled per prompt (default 1 or "
                   "the config); above 1 adds pass@k and majority vote (maj@n) and needs --temperature > 0")
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

    p = sub.add_parser("demo", help="offline demos on the shipped base: sft (persona, `make demo`) or rl (ReFT: "
                       "SFT, then GRPO on the same questions)")
    p.add_argument("which", nargs="?", choices=["sft", "rl"], default="sft")
    p.add_argument("--seeds", type=_positive_int, default=None, help="rl: how many seeds to run (default 1)")
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_demo(args) -> int:
    if args.which == "rl":
        from sftkit.demo_rl import main as rl_main

        rl_main(seeds=args.seeds or 1)
    else:
        from sftkit.demo import main as sft_main

        sft_main()
    return 0


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

