"""Generation metrics during training: every N steps, reply to a small eval set and log the scores."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from sftkit.eval.run import load_eval_records
from sftkit.eval.scoring import score


class GenerationEval(TrainerCallback):
    """Logs ``eval_gen_rougeL`` (zh chars), ``eval_gen_bleu`` and ``eval_gen_answer_accuracy`` with the loss."""

    def __init__(self, cfg, tokenizer, renderer):
        self.cfg, self.tokenizer, self.renderer = cfg.eval, tokenizer, renderer
        self.items = load_eval_records(cfg.eval.data, cfg.eval.format, cfg.eval.max_samples)
        self.trainer = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.cfg.every_steps and state.global_step % self.cfg.every_steps == 0 and self.trainer is not None:
            self.trainer.log(self.run(model))

    @torch.no_grad()
    def run(self, model) -> dict:
        from sftkit.tokenize.packing import ATTENTION

        was = model.training
        model.eval()
        packed = getattr(model.config, "_attn_implementation", None) == ATTENTION
        if packed:  # padded generation needs a real attention mask
            model.set_attn_implementation("sdpa")
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        preds = []
        try:
            for i in range(0, len(self.items), self.cfg.batch_size):
                chunk = self.items[i:i + self.cfg.batch_size]
                prompts = [self.renderer.prompt_text(c["prompt"], c["tools"]) for c in chunk]
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
                out = model.generate(**enc, max_new_tokens=self.cfg.max_new_tokens, do_sample=False,
                                     eos_token_id=model.generation_config.eos_token_id, pad_token_id=tok.pad_token_id)
                preds += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        finally:
            tok.padding_side = side
            model.train(was)
            if packed:
                model.set_attn_implementation(ATTENTION)
        m, _ = score(self.items, preds)
        logs = {"eval_gen_bleu": m["bleu"], "eval_gen_rougeL": m["rouge_char"]["rougeL"], "eval_gen_exact_match": m["exact_match"]}
        if m["answer_accuracy"] is not None:
            logs["eval_gen_answer_accuracy"] = m["answer_accuracy"]
        return logs
