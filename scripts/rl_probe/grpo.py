"""GRPO (trl's GRPOTrainer, used directly) from an SFT checkpoint on the same training questions.

Reward = answer match of the completion against ``meta.final_answer`` (the eval's own extraction), so the
verified answer, not the demonstration, is what is rewarded. Dev accuracy is printed every ``--eval-every``
steps (dev decides; the test split is only read by run.py at the end).
"""

from __future__ import annotations

import argparse
import importlib
import time

import torch
from common import accuracy, load
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from sftkit.eval.answers import answers_match, extract_answer


def answer_reward(completions, final_answer, **_) -> list[float]:
    """1.0 when the completion's answer matches the verified final answer, else 0.0."""
    return [float(answers_match(extract_answer(c[0]["content"]), ref)) for c, ref in zip(completions, final_answer,
                                                                                         strict=True)]


class DevEval(TrainerCallback):
    """Greedy dev accuracy every ``every`` steps (printed, and kept in ``history``)."""

    def __init__(self, model, tok, ren, dev, every):
        self.args, self.every, self.history, self.t0 = (model, tok, ren, dev), every, [], time.time()

    def on_step_end(self, args, state, control, **kw):
        if self.every and state.global_step % self.every == 0:
            dev = accuracy(*self.args)
            self.history.append((state.global_step, dev["acc"]))
            print(f"step {state.global_step} t={time.time() - self.t0:.0f}s dev {dev}", flush=True)


def grpo_config(a, out: str, seed: int) -> GRPOConfig:
    """The GRPO settings under test (CPU: no bf16, no gradient checkpointing)."""
    return GRPOConfig(output_dir=out, use_cpu=True, bf16=False, gradient_checkpointing=False, seed=seed,
                      learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, beta=a.beta,
                      num_generations=a.gens, per_device_train_batch_size=a.prompts * a.gens,
                      max_completion_length=a.max_len, temperature=a.temp, max_steps=a.steps,
                      loss_type=a.loss, scale_rewards=a.scale, logging_steps=10, save_strategy="no",
                      report_to=[], disable_tqdm=True, dataloader_num_workers=0)


def train(model, tok, ren, train_recs, dev_recs, a, seed: int, out: str = "/tmp/rl_probe/grpo"):
    """Run GRPO on the training questions; returns (trainer, dev history)."""
    ds = Dataset.from_list([{"prompt": r["messages"][:-1], "final_answer": r["meta"]["final_answer"]}
                            for r in train_recs])
    cb = DevEval(model, tok, ren, dev_recs, a.eval_every)
    trainer = GRPOTrainer(model=model, reward_funcs=answer_reward, args=grpo_config(a, out, seed),
                          train_dataset=ds, processing_class=tok, callbacks=[cb])
    trainer.train()
    return trainer, cb.history


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--gens", type=int, default=8)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-len", type=int, default=8)
    p.add_argument("--temp", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--loss", default="dapo")
    p.add_argument("--scale", default="group")
    p.add_argument("--eval-every", type=int, default=10)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="routing")
    p.add_argument("--slip", type=float, default=0.7)
    add_args(p)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    data = importlib.import_module(a.task).make_data(a.seed, slip_rate=a.slip)
    model, tok, ren = load()
    model.load_state_dict(torch.load(a.ckpt))
    print("start dev", accuracy(model, tok, ren, data["dev"]), flush=True)
    t0 = time.time()
    train(model, tok, ren, data["train"], data["dev"], a, a.seed)
    print(f"grpo wall {time.time() - t0:.0f}s")
