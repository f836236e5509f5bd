"""One GRPO step, split into generation and training time: sftkit's ``grpo`` stage against trl's
``GRPOTrainer`` used directly, on the same model, questions, order and settings (not a timed test).

Both sides train the shipped base with a fresh LoRA adapter (r 8, all linear layers), answer-match reward,
``num_generations`` completions per question, the same seed (so trl's sampler hands both the same questions
in the same order). sftkit: ``sftkit.train.grpo.build`` (prompts rendered by sftkit's Renderer, rollouts
through ``sftkit.generation.generate`` via trl's ``rollout_func``, sftkit's reward wrappers, metrics and
completion logging). trl: ``GRPOTrainer(model, reward_funcs, GRPOConfig, dataset of conversational prompts,
peft_config)`` with its own chat templating and generation. Generation time is trl's ``_generate`` on both
sides (prompt tokenizing, sampling, decoding, length metrics); training time is the rest of the step
(rewards, reference log-probabilities, forward, backward, optimizer). The first step is a warm-up and
not counted; the medians of the others are reported, and the two sides alternate over ``--rounds``.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_grpo.py`` (``--steps 2 --rounds 1`` for a
smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step and of the generation inside it."""

    def __init__(self):
        self.steps, self.gen, self._gen, self._t = [], [], 0.0, 0.0

    def timed(self, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._gen += time.perf_counter() - t
        return wrapper

    def on_step_begin(self, args, state, control, **kwargs):
        self._gen, self._t = 0.0, time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._t)
        self.gen.append(self._gen)


def sftkit_config(out: Path, a) -> object:
    from sftkit.config import load_config

    return load_config(raw={
        "stage": "grpo", "model": "sftkit-tiny", "method": "lora",
        "data": {"datasets": [{"path": str(REPO / "data" / "gsm8k" / "train.jsonl")}],
                 "max_samples": a.questions * a.steps, "max_length": 512},
        "train": {"output_dir": str(out), "max_steps": a.steps, "batch_size": a.questions, "learning_rate": 1e-4,
                  "lr_scheduler": "constant", "logging_steps": 1, "save_steps": 10_000, "precision": "fp32",
                  "overwrite": True},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "rl": {"num_generations": a.generations, "max_completion_length": a.max_new, "kl_coef": 0.04,
               "rewards": [{"name": "answer_match"}], "log_completions": 2}})


def run_sftkit(a, workdir: Path) -> tuple[StepTimer, list[dict], float]:
    from sftkit.train import grpo
    from sftkit.train.run_dir import release_run_dir

    cfg = sftkit_config(workdir / "sftkit", a)
    trainer, run_dir, _ = grpo.build(cfg)
    timer = StepTimer()
    trainer._generate = timer.timed(trainer._generate)
    trainer.add_callback(timer)
    try:
        trainer.train()
    finally:
        release_run_dir(run_dir)
    records = [json.loads(r) for r in trainer.train_dataset["record"]]
    return timer, records, _mean_length(trainer)


def run_trl(a, workdir: Path, records: list[dict]) -> tuple[StepTimer, float]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from sftkit.models import load_model, load_tokenizer
    from sftkit.rewards import answer_match, split_prompt

    tokenizer = load_tokenizer("sftkit-tiny")
    model = load_model("sftkit-tiny", precision="fp32")
    data = Dataset.from_dict({"prompt": [split_prompt(r)[0] for r in records],
                              "final_answer": [r["meta"]["final_answer"] for r in records]})

    def answer_reward(prompts, completions, final_answer, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return answer_match(texts, [{"meta": {"final_answer": f}} for f in final_answer])

    args = GRPOConfig(output_dir=str(workdir / "trl"), max_steps=a.steps, per_device_train_batch_size=a.questions
                      * a.generations, learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=1,
                      save_steps=10_000, bf16=False, use_cpu=not torch.cuda.is_available(),
                      gradient_checkpointing=False, beta=0.04, num_generations=a.generations,
                      max_completion_length=a.max_new, temperature=1.0, report_to=[], seed=42, data_seed=42,
                      loss_type="grpo", disable_tqdm=True)
    peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=[answer_reward], args=args, train_dataset=data,
                          processing_class=tokenizer, peft_config=peft, callbacks=[timer])
    trainer._generate = timer.timed(trainer._generate)
    trainer.train()
    return timer, _mean_length(trainer)


def _mean_length(trainer) -> float:
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return round(sum(lengths) / max(1, len(lengths)), 1)


def _progress(side: str, r: int, timer: StepTimer) -> None:
    steps = ", ".join(f"{s:.2f} (gen {g:.2f})" for s, g in zip(timer.steps, timer.gen, strict=True))
    print(f"round {r + 1} {side}: step seconds {steps}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per run (the first is a warm-up)")
    p.add_argument("--questions", type=int, default=8, help="questions per step")
    p.add_argument("--generations", type=int, default=8, help="completions per question")
    p.add_argument("--max-new", type=int, default=32, help="max completion length in tokens")
    p.add_argument("--rounds", type=int, default=2, help="alternate sftkit, trl this many times")
    a = p.parse_args(argv)
    timers: dict[str, list[StepTimer]] = {"sftkit": [], "trl": []}
    lengths: dict[str, list[float]] = {"sftkit": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            timer, records, length = run_sftkit(a, Path(tmp) / f"r{r}")
            timers["sftkit"].append(timer)
            lengths["sftkit"].append(length)
            _progress("sftkit", r, timer)
            timer, length = run_trl(a, Path(tmp) / f"r{r}", records)
            timers["trl"].append(timer)
            lengths["trl"].append(length)
            _progress("trl", r, timer)
    result = {"shape": {"questions": a.questions, "generations": a.generations, "max_new_tokens": a.max_new,
                        "steps_counted": (a.steps - 1) * a.rounds, "threads": torch.get_num_threads()}}
    for side, ts in timers.items():
        steps = [s for t in ts for s in t.steps[1:]]
        gens = [g for t in ts for g in t.gen[1:]]
        trains = [s - g for t in ts for s, g in zip(t.steps[1:], t.gen[1:], strict=True)]
        result[side] = {"step_s": round(statistics.median(steps), 3), "generation_s": round(statistics.median(gens), 3),
                        "training_s": round(statistics.median(trains), 3),
                        "mean_completion_tokens": lengths[side]}
    s, t = result["sftkit"], result["trl"]
    result["ratio_sftkit_over_trl"] = {k: round(s[k] / t[k], 3) for k in ("step_s", "generation_s", "training_s")}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
