"""Rollouts for trl's online trainers through the one generation function, rewards in trl's shape, and a
callback that logs sampled completions with their rewards.

- ``Rollouts`` is trl's ``rollout_func`` (GRPO; the RLOO recipe calls it from two small hooks): the
  prompts trl hands over are the prompt texts sftkit rendered for the dataset, each mapped back to its
  conversation and tools, and answered by ``sftkit.generation.generate`` (the Renderer's template, the
  end-of-turn tokens, the sampling settings of ``rl:``). It returns the prompt ids and each completion's
  ``Completion.token_ids`` (through the end-of-turn token, so ending the turn is learned too) and
  ``logprobs: None``: trl's own transformers path returns None as well; sampling log-probabilities only
  feed vLLM's importance-sampling correction, and the old-policy log-probabilities trl recomputes itself
  whenever they can differ from the current ones (``num_iterations > 1``).
- ``trl_reward`` wraps an ``sftkit.rewards`` function ``fn(completions, records)`` as trl's
  ``f(prompts, completions, completion_ids, **columns)``: the reply text is the ``Completion.text`` of
  those ids (cut as eval cuts it), the record comes from the dataset's ``record`` column (JSON).
- ``CompletionLog`` writes ``rl.log_completions`` completions of the latest rollout batch (prompt,
  completion, each reward) to ``metrics.jsonl`` at every logging step, as ``{"step": N, "completions":
  [...]}``, and to TensorBoard as text when it is on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from transformers import TrainerCallback

from sftkit.generation import GenerationOptions, generate
from sftkit.train.run_dir import is_main_process


class Rollouts:
    """trl's ``rollout_func``: ``(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}``."""

    def __init__(self, tokenizer, renderer, prompts: dict[str, tuple[list[dict], list | None, list[int]]],
                 options: GenerationOptions):
        """``prompts``: each prompt text -> (conversation, tools, prompt ids), as rendered for the dataset."""
        self.tokenizer, self.renderer, self.prompts, self.options = tokenizer, renderer, prompts, options
        self.calls = 0  # rollout batches generated so far
        self.texts: dict[tuple[int, ...], str] = {}  # completion ids of the latest batch -> reply text
        self.batch: list[tuple[str, str]] = []  # (prompt text, reply text) of the latest batch, in trl's order
        self.rewards: dict[str, list[float]] = {}  # reward name -> values for the latest batch

    def __call__(self, prompts: list[str], trainer) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        unique, n = _groups(prompts)  # trl repeats each prompt once per completion: sample a group at once
        convs = [self.prompts[p] for p in unique]
        opts = replace(self.options, n=n, batch_size=max(1, len(prompts)))  # one generate call, as trl
        done = generate(model, self.tokenizer, self.renderer, [c for c, _, _ in convs], [t for _, t, _ in convs], opts)
        ids = [i for _, _, i in convs]
        self.calls += 1
        self.texts = {tuple(c.token_ids): c.text for c in done}
        self.batch = [(p, c.text) for p, c in zip(prompts, done, strict=True)]
        self.rewards = {}
        return {"prompt_ids": [ids[k // n] for k in range(len(done))],
                "completion_ids": [list(c.token_ids) for c in done], "logprobs": None}

    def text(self, ids, fallback) -> str:
        """The reply text of generated ids (trl's own decoding when the ids are not from the latest batch)."""
        found = self.texts.get(tuple(ids))
        if found is not None:
            return found
        if isinstance(fallback, list):  # conversational: [{"role": "assistant", "content": ...}]
            return "".join(m.get("content") or "" for m in fallback if isinstance(m, dict))
        return fallback or ""


def _groups(prompts: list[str]) -> tuple[list[str], int]:
    """(distinct prompts, completions each) when the list is runs of equal length of one prompt; else each once."""
    runs: list[list] = []
    for p in prompts:
        if runs and runs[-1][0] == p:
            runs[-1][1] += 1
        else:
            runs.append([p, 1])
    sizes = {k for _, k in runs}
    return ([p for p, _ in runs], sizes.pop()) if len(sizes) == 1 else (list(prompts), 1)


def trl_reward(name: str, fn, rollouts: Rollouts):
    """An ``sftkit.rewards`` function ``fn(completions, records)`` as a trl reward function named ``name``."""
    cache: dict[str, dict] = {}

    def reward(prompts, completions, completion_ids, record, **_):
        texts = [rollouts.text(ids, c) for ids, c in zip(completion_ids, completions, strict=True)]
        records = [cache.get(r) or cache.setdefault(r, json.loads(r)) for r in record]
        values = fn(texts, records)
        rollouts.rewards[name] = list(values)
        return values

    reward.__name__ = reward.__qualname__ = name  # trl logs rewards/<name>/mean and /std
    return reward


class CompletionLog(TrainerCallback):
    """At each training log: ``k`` completions of the latest rollout batch with their rewards -> metrics.jsonl
    (and TensorBoard text). Set ``trainer`` after building the trainer to reach its TensorBoard writer."""

    def __init__(self, rollouts: Rollouts, prompts_shown: dict[str, str], path: Path, k: int):
        self.rollouts, self.shown, self.path, self.k = rollouts, prompts_shown, Path(path), k
        self.trainer = None
        self._logged = 0  # rollout batch already written

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (self.k and logs and is_main_process()) or self.rollouts.calls == self._logged:
            return
        if "train_runtime" in logs or all(key.startswith("eval_") for key in logs):
            return
        self._logged = self.rollouts.calls
        samples = self.sample()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": state.global_step, "completions": samples}, ensure_ascii=False) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            writer.add_text("completions", _markdown(samples), state.global_step)

    def sample(self) -> list[dict]:
        """``k`` completions spread over the batch (one per question first), with each reward's value."""
        batch = self.rollouts.batch
        if not batch:
            return []
        picks = sorted({i * len(batch) // min(self.k, len(batch)) for i in range(min(self.k, len(batch)))})
        return [{"prompt": self.shown.get(batch[i][0], batch[i][0]), "completion": batch[i][1],
                 "rewards": {name: v[i] for name, v in self.rollouts.rewards.items() if i < len(v)}}
                for i in picks]

    def _tensorboard(self):
        from transformers.integrations import TensorBoardCallback

        callbacks = self.trainer.callback_handler.callbacks if self.trainer is not None else []
        board = next((cb for cb in callbacks if isinstance(cb, TensorBoardCallback)), None)
        return getattr(board, "tb_writer", None)


def _markdown(samples: list[dict]) -> str:
    rows = [f"**prompt:** {s['prompt']}\n\n**completion:** {s['completion']}\n\n**rewards:** {s['rewards']}"
            for s in samples]
    return "\n\n---\n\n".join(rows)
