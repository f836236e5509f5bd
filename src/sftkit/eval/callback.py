"""Generation metrics during training: every N steps, reply to a small eval set and log the scores.

Replies come from ``sftkit.generation.generate``, the function ``sftkit eval`` uses, with each record's
tools; the training tokenizer is only read (a run saves it exactly as it was loaded).
"""

from __future__ import annotations

from transformers import TrainerCallback

from sftkit.eval.run import load_eval_records
from sftkit.eval.scoring import score
from sftkit.generation import GenerationOptions, generate

TRAINING_EVAL_SAMPLES = 32  # records scored during training when eval.max_samples is not set


class GenerationEval(TrainerCallback):
    """Logs ``eval_gen_rougeL`` (zh chars), ``eval_gen_bleu`` and ``eval_gen_answer_accuracy`` with the loss."""

    def __init__(self, cfg, tokenizer, renderer):
        self.cfg, self.tokenizer, self.renderer = cfg.eval, tokenizer, renderer
        self.items = load_eval_records(cfg.eval.data, cfg.eval.format, cfg.eval.max_samples or TRAINING_EVAL_SAMPLES)
        self.options = GenerationOptions(max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                                         stop=list(cfg.eval.stop))
        self.trainer = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.cfg.every_steps and state.global_step % self.cfg.every_steps == 0 and self.trainer is not None:
            due = control.should_log  # logging resets it: the training loss due at this step must still be logged
            self.trainer.log(self.run(model))
            control.should_log = due

    def run(self, model) -> dict:
        """Score greedy replies to the eval items with the model as it is now."""
        done = generate(model, self.tokenizer, self.renderer, [it["prompt"] for it in self.items],
                        [it.get("tools") for it in self.items], self.options)
        m, _ = score(self.items, [c.text for c in done])
        logs = {"eval_gen_bleu": m["bleu"], "eval_gen_rougeL": m["rouge_char"]["rougeL"],
                "eval_gen_exact_match": m["exact_match"]}
        if m["answer_accuracy"] is not None:
            logs["eval_gen_answer_accuracy"] = m["answer_accuracy"]
        return logs
