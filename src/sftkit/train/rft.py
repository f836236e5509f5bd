"""Rejection-sampling fine-tuning (``stage: rft``; RFT / STaR-style self-improvement), top to bottom.

Each of ``rl.rft_rounds`` rounds: load the current model (``model`` for round 1, the previous round's
result after), sample ``rl.rft_samples`` answers to every training question through the one generation
function (``rl.temperature/top_p/top_k/max_completion_length``; ``eval.batch_size`` sequences per call, each
call seeded by ``train.seed + round`` and its first question, so a run repeats itself), keep
the verified-correct ones, fine-tune on them with the SFT recipe (``train/sft.py``; the method registry
decides what trains), and go on from the result. With ``rl.curriculum`` (Curr-ReFT), the rounds go easy
to hard: round r asks the questions of the easiest r/rounds of the curriculum levels (``round_questions``).

What is kept, per question:
- a sampled reply whose answer equals the question's final answer (``sftkit.rewards.is_correct``: the
  eval extraction and numeric compare, i.e. ``answer_match`` = 1) and that ended by itself (a reply cut
  at ``max_completion_length`` is not kept: its "answer" is wherever the cut fell);
- identical replies (same text after stripping surrounding whitespace) count once;
- at most ``rl.rft_keep`` of them. Other rewards listed in ``rl.rewards`` do not filter: they rank the
  correct replies (highest weighted sum first, then sampling order) when more than ``rft_keep`` remain,
  so e.g. a ``format`` reward prefers well-formatted correct replies; every value is in the sample's meta;
- besides those, the question's own demonstration when it is verified correct too
  (``rl.rft_keep_demonstration``, default on: RFT papers augment the SFT data with the sampled paths;
  a demonstration whose answer is wrong — an annotator's slip — is left out, as the verifier says). It
  does not count towards ``rft_keep``; a sample identical to it is not kept twice.

The run folder::

    config.yaml         this config
    data_report.json    loader report, questions, and per round: questions, sampled, correct, truncated,
                        kept, demonstrations_kept, pass_at_k (share of questions with a correct sample:
                        pass@k on the training questions), reward_means, seconds
    rejects.jsonl       records the loader refused, and records without a final answer (field
                        meta.final_answer) or a user turn (messages), each with file, line and reason
    eval.jsonl          held-out questions (data.val_size / data.eval_file), the eval loss of every round
    pipeline.json       the rounds; ``sftkit chat/eval/export <run>`` use the last round's model
    round-<r>/          samples.jsonl (the kept replies as canonical conversations: the question's
                        messages + the reply, meta.rft = round, source, rewards; origin = the question's)
                        sampled.jsonl (every sample: text, finish, rewards, correct, kept), and the
                        round's SFT run (config.yaml, data_report.json, metrics.jsonl, final/)

The run folder is locked for the whole run. Started again, a round whose ``final/`` is complete is not
redone, and a round whose ``samples.jsonl`` was written is not sampled again; a round trained anew makes the
later rounds stale, so they are redone (``train.overwrite``: every round is).
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import torch
import yaml

from sftkit.config import SFTConfig
from sftkit.config_rl import CurriculumConfig
from sftkit.errors import SftkitError
from sftkit.generation import GenerationOptions, generate
from sftkit.models import load_model, load_tokenizer
from sftkit.progress import progress
from sftkit.rewards import final_answer, is_correct, load_rewards, split_prompt
from sftkit.tokenize.render import Renderer
from sftkit.train.chain import PIPELINE
from sftkit.train.curriculum import order
from sftkit.train.data import load_records
from sftkit.train.run_dir import (
    atomic_write_text,
    discard,
    disk_full_is_user_error,
    is_complete_final,
    lock_run_dir,
    release_run_dir,
    remove_tmp_files,
)

SAMPLES = "samples.jsonl"
_LACKS = {"meta.final_answer": "a final answer", "messages": "a user turn"}
VERIFIER = "answer_match"  # the reward that is_correct() is; the others rank correct replies


def train(cfg: SFTConfig) -> Path:
    """Run every round of rejection sampling + fine-tuning; return the run folder.

    Raises:
        SftkitError: no question with a final answer, no verified-correct answer in a round, bad options
            or data, or the folder is in use by another training.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SftkitError("stage rft samples in one process: run it without torchrun/accelerate launch "
                          "(one GPU), or sample with `sftkit generate` and train stage sft on the result")
    run = Path(cfg.train.output_dir)
    run.mkdir(parents=True, exist_ok=True)
    lock_run_dir(run)
    try:
        with disk_full_is_user_error(run):
            _rounds(cfg, run)
    except BaseException:
        remove_tmp_files(run)
        raise
    finally:
        release_run_dir(run)
    return run


def _rounds(cfg: SFTConfig, run: Path) -> None:
    """Config, questions, then each round not yet done: sample (unless its samples are written), fine-tune."""
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.model_dump(), allow_unicode=True, sort_keys=False))
    rewards = load_rewards(cfg.rl.rewards)  # bad reward names fail before any model is loaded
    questions, evals, report = _questions(cfg, run)
    rounds = [run / f"round-{r}" for r in range(1, cfg.rl.rft_rounds + 1)]
    info = {"stage": "rft", "stages": [{"stage": "sft", "method": cfg.method, "run": d.name} for d in rounds],
            "last": rounds[-1].name}  # relative to this folder: the run can be opened from anywhere
    atomic_write_text(run / PIPELINE, json.dumps(info, indent=2))
    eval_file = _write_records(run / "eval.jsonl", evals) if evals else None
    redo = cfg.train.overwrite  # after a round is trained anew, the rounds built on it are stale
    if redo:  # starting over: rounds of an earlier, longer run go too
        for d in set(run.glob("round-*")) - set(rounds):
            discard(d)
    old = {} if redo else _read_json(run / "data_report.json").get("rounds", {})
    report["rounds"] = {}
    model = cfg.model
    for r, folder in enumerate(rounds, start=1):
        if is_complete_final(folder) and not redo:
            print(f"rft round {r}/{len(rounds)}: already trained in {folder}; kept", flush=True)
        else:
            summary = None if redo or not (folder / SAMPLES).is_file() else old.get(str(r))
            if summary is None:
                asked = round_questions(questions, cfg.rl.curriculum, r, len(rounds))
                summary = sample_round(cfg, model, asked, rewards, r, folder)
            else:
                print(f"rft round {r}/{len(rounds)}: samples already in {folder / SAMPLES}; kept", flush=True)
            report["rounds"][str(r)] = summary
            atomic_write_text(run / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False))
            _fine_tune(cfg, model, folder, eval_file, r, overwrite=redo)
            redo = True
        report["rounds"].setdefault(str(r), old.get(str(r)))
        model = str(folder)
    atomic_write_text(run / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False))


def _questions(cfg: SFTConfig, run: Path) -> tuple[list[dict], list[dict], dict]:
    """(training questions with a final answer, held-out records with a reply, loader report); training records
    that cannot be a question go to ``rejects.jsonl`` with their field and reason."""
    records, evals, report = load_records(cfg, run, purpose="prompts")  # a question needs no demonstration
    usable, missing = [], []
    for rec in records:
        problem = _unusable(rec)
        (missing.append((rec, *problem)) if problem else usable.append(rec))
    missing.sort(key=lambda m: _order(m[0]))
    if missing:
        with open(run / "rejects.jsonl", "a", encoding="utf-8") as fh:
            for rec, field, reason in missing:
                o = rec.get("origin") or {}
                fh.write(json.dumps({"source": o.get("file"), "line": o.get("line"), "index": o.get("index"),
                                     "field": field, "reason": reason, "stage": "rft"}, ensure_ascii=False) + "\n")
        named = ", ".join(_where(m[0]) for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        counts = Counter(field for _, field, _ in missing)
        why = ", ".join(f"{n} without {_LACKS[f]} ({f})" for f, n in counts.items())
        print(f"rft: {len(missing)} of {len(records)} records left out, {why}: {named} (details in "
              f"{run / 'rejects.jsonl'})", flush=True)
    if not usable:
        raise SftkitError(f"stage rft: none of the {len(records)} training records is a question with a final "
                          "answer to verify sampled replies against; give each a user turn and meta.final_answer "
                          f"(or end its reply with '#### N'); reasons in {run / 'rejects.jsonl'}")
    report.update(questions=len(usable), left_out=dict(Counter(field for _, field, _ in missing)))
    return usable, [rec for rec in evals if _has_reply(rec)], report


def round_questions(questions: list[dict], curriculum: CurriculumConfig, r: int, rounds: int) -> list[dict]:
    """Curr-ReFT over rounds: with ``rl.curriculum``, round ``r`` of ``rounds`` samples the questions of the
    easiest ``ceil(levels * r / rounds)`` curriculum levels (a level: one difficulty value, or one format with
    the unlisted formats as a last level), so the last round asks every question; without one, every round
    asks all of them."""
    if curriculum.by == "none":
        return questions
    ordered = order(questions, curriculum)  # checks every record has what the curriculum needs
    rank = {name: i for i, name in enumerate(curriculum.formats)}

    def level(rec: dict) -> float:
        value = (rec.get("meta") or {}).get(curriculum.field)
        return float(value) if curriculum.by == "difficulty" else rank.get(value, len(rank))

    distinct = sorted({level(rec) for rec in ordered})
    top = distinct[math.ceil(len(distinct) * r / rounds) - 1]
    return [rec for rec in ordered if level(rec) <= top]


def _unusable(rec: dict) -> tuple[str, str] | None:
    """(field, reason) when a record cannot be a question to sample answers for, else None."""
    try:
        split_prompt(rec)
    except SftkitError:
        return "messages", "no user turn to use as the question"
    if final_answer(rec) is None:
        return "meta.final_answer", ("no final answer to verify sampled replies against (no meta.final_answer, "
                                     "no answer marker such as '#### 42' in the reply)")
    return None


def _has_reply(rec: dict) -> bool:
    try:
        return split_prompt(rec)[1] is not None
    except SftkitError:
        return False


def _order(rec: dict) -> tuple:
    o = rec.get("origin") or {}
    return str(o.get("file")), o.get("line") or 0, o.get("index") or 0


def _where(rec: dict) -> str:
    o = rec.get("origin") or {}
    return f"{o.get('file')} line {o['line']}" if o.get("line") else f"{o.get('file')} record {o.get('index')}"


def sample_round(cfg: SFTConfig, model_name: str, questions: list[dict], rewards: list, r: int,
                 folder: Path) -> dict:
    """Sample, verify and keep answers for every question; write ``samples.jsonl`` and ``sampled.jsonl``
    into ``folder``; return the round's summary."""
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(model_name, cfg.trust_remote_code)
    model = load_model(model_name, precision=cfg.train.precision, trust_remote_code=cfg.trust_remote_code)
    if torch.cuda.is_available():  # loaded on the CPU; sampling is most of a round's time
        model.to("cuda")
    renderer = Renderer(tokenizer, cfg.template)
    k = cfg.rl.rft_samples
    per_call = max(1, cfg.eval.batch_size // k)  # questions per generate call (eval.batch_size sequences)
    kept, sampled, summary = [], [], {"questions": len(questions), "k": k, "sampled": 0, "correct": 0,
                                      "truncated": 0, "kept": 0, "demonstrations_kept": 0,
                                      "questions_with_correct": 0}
    with progress(f"rft round {r}: sampling", total=len(questions), every=1) as tick:
        for first in range(0, len(questions), per_call):
            chunk = questions[first:first + per_call]
            opts = GenerationOptions(n=k, temperature=cfg.rl.temperature, top_p=cfg.rl.top_p, top_k=cfg.rl.top_k,
                                     max_new_tokens=cfg.rl.max_completion_length, batch_size=per_call * k,
                                     seed=(cfg.train.seed + r) * 1_000_003 + first)  # chunks differ, rounds too
            prompts = [split_prompt(q)[0] for q in chunk]
            completions = generate(model, tokenizer, renderer, prompts, [q.get("tools") for q in chunk], opts)
            texts = [c.text for c in completions]
            recs = [q for q in chunk for _ in range(k)]
            values = {name: fn(texts, recs) for name, _, fn in rewards}
            for i, q in enumerate(chunk):
                rows = [{"text": texts[j], "message": completions[j].message(),
                         "finish": completions[j].finish_reason, "rewards": {n: v[j] for n, v in values.items()}}
                        for j in range(i * k, (i + 1) * k)]
                kept += _keep(cfg, q, prompts[i], rows, rewards, r, summary)
                sampled += [{"origin": q.get("origin"), "round": r, "text": x["text"], "finish": x["finish"],
                             "rewards": x["rewards"], "correct": x["correct"], "kept": x["kept"]} for x in rows]
                tick()
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the round's SFT loads its own copy
    summary["pass_at_k"] = summary["questions_with_correct"] / max(1, len(questions))
    summary["reward_means"] = {n: sum(s["rewards"][n] for s in sampled) / max(1, len(sampled)) for n, _, _ in rewards}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    _write_records(folder / "sampled.jsonl", sampled)
    print(f"rft round {r}: {summary['sampled']} answers to {len(questions)} questions in {summary['seconds']} s; "
          f"correct {summary['correct']} (pass@{k} {summary['pass_at_k']:.1%}), truncated {summary['truncated']}; "
          f"kept {summary['kept']} + {summary['demonstrations_kept']} demonstrations"
          + (f" -> {folder / SAMPLES}" if kept else ""), flush=True)
    if not kept:
        raise SftkitError(f"rft round {r}: nothing to fine-tune on: of {summary['sampled']} sampled answers "
                          f"{summary['correct']} were verified correct, {summary['truncated']} cut at "
                          f"rl.max_completion_length, and no demonstration was correct (details in "
                          f"{folder / 'sampled.jsonl'}); start from a model that sometimes answers right (e.g. "
                          "after an sft stage), or raise rl.rft_samples / rl.max_completion_length")
    _write_records(folder / SAMPLES, kept)  # written last: its presence means the round's sampling is done
    summary["samples_path"] = str(folder / SAMPLES)
    return summary


def _keep(cfg: SFTConfig, question: dict, prompt: list[dict], rows: list[dict], rewards: list, r: int,
          summary: dict) -> list[dict]:
    """The records kept for one question (see the module docstring); marks ``correct``/``kept`` on ``rows``."""
    others = [(n, w) for n, w, _ in rewards if n != VERIFIER]
    for x in rows:
        x["correct"], x["kept"] = is_correct(x["text"], question), False
        summary["correct"] += x["correct"]
        summary["truncated"] += x["finish"] == "length"
    summary["sampled"] += len(rows)
    summary["questions_with_correct"] += any(x["correct"] for x in rows)
    out, seen = [], set()
    demo = split_prompt(question)[1]
    if demo is not None and cfg.rl.rft_keep_demonstration and \
            is_correct(demo.get("content") or "", question):
        seen.add((demo.get("content") or "").strip())
        out.append(_record(question, prompt, demo, r, "demonstration", {}))
        summary["demonstrations_kept"] += 1
    ranked = sorted((x for x in rows if x["correct"] and x["finish"] != "length"),
                    key=lambda x: -sum(w * x["rewards"][n] for n, w in others))  # stable: sampling order on ties
    chosen = []  # the demonstration does not count towards rft_keep
    for x in ranked:
        if x["text"].strip() not in seen and len(chosen) < cfg.rl.rft_keep:
            seen.add(x["text"].strip())
            x["kept"] = True
            chosen.append(_record(question, prompt, x["message"], r, "sample", x["rewards"]))
    summary["kept"] += len(chosen)
    return out + chosen


def _record(question: dict, prompt: list[dict], reply: dict, r: int, source: str, rewards: dict) -> dict:
    """A canonical conversation: the question's prompt + one reply; the question's meta, tools and origin."""
    rec = {"messages": [*prompt, reply]}
    for key in ("tools", "images"):
        if question.get(key):
            rec[key] = question[key]
    rec["meta"] = {**(question.get("meta") or {}), "rft": {"round": r, "source": source, "rewards": rewards}}
    rec["meta"].setdefault("final_answer", final_answer(question))
    rec["origin"] = question.get("origin")
    return rec


def _fine_tune(cfg: SFTConfig, model: str, folder: Path, eval_file: Path | None, r: int, overwrite: bool) -> None:
    """The SFT recipe on the round's kept samples, from ``model``, into ``folder`` (``overwrite``: an earlier
    run's checkpoints there are stale)."""
    from sftkit.train.sft import train as sft_train

    raw = cfg.model_dump(exclude={"stages"})
    raw.update(stage="sft", model=model)
    raw["data"].update(datasets=[{"path": str(folder / SAMPLES)}], max_samples=None, val_size=0.0,
                       eval_file=str(eval_file) if eval_file else None)
    raw["train"].update(output_dir=str(folder), overwrite=overwrite)
    if overwrite:  # a stale round starts over: its checkpoints are of a model built on an older round
        raw["train"]["resume"] = None
    sub = SFTConfig.model_validate(raw)
    print(f"rft round {r}: fine-tuning ({cfg.method}) from {model} on {folder / SAMPLES}", flush=True)
    sft_train(sub)


def _write_records(path: Path, records: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))
    return path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
