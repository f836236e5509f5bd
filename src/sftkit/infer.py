"""Use a trained model: chat (streaming), batch generation from a JSONL of prompts, export merged weights."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from sftkit.errors import SftkitError
from sftkit.models import load_model, load_tokenizer, resolve, run_info
from sftkit.tokenize.render import Renderer


class Chat:
    """A loaded model + tokenizer + template, ready to answer conversations."""

    def __init__(self, model: str, template: str | None = None, trust_remote_code: bool = False):
        path = resolve(model)
        info = run_info(path)
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        self.tokenizer.padding_side = "left"
        self.model = load_model(path, precision="auto", trust_remote_code=trust_remote_code).eval()
        self.renderer = Renderer(self.tokenizer, template or info.get("template"))
        gen = getattr(self.model, "generation_config", None)
        self.stop = (gen.eos_token_id if gen is not None and gen.eos_token_id is not None
                     else self.tokenizer.eos_token_id)

    def _inputs(self, prompts: list[str]) -> dict:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.model.device) for k, v in enc.items()}

    def _gen_kwargs(self, max_new_tokens: int, temperature: float, top_p: float) -> dict:
        kw = {"max_new_tokens": max_new_tokens, "eos_token_id": self.stop, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kw.update(do_sample=False)
        return kw

    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 1.0, batch_size: int = 16) -> list[str]:
        """Replies to a list of conversations (each ending with a user turn), batched with left padding."""
        prompts = [self.renderer.prompt_text(c) for c in conversations]
        out = []
        for i in range(0, len(prompts), batch_size):
            inputs = self._inputs(prompts[i:i + batch_size])
            ids = self.model.generate(**inputs, **self._gen_kwargs(max_new_tokens, temperature, top_p))
            new = ids[:, inputs["input_ids"].shape[1]:]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out

    def stream(self, conversation: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = self._inputs([self.renderer.prompt_text(conversation)])
        kwargs = {**inputs, **self._gen_kwargs(max_new_tokens, temperature, top_p), "streamer": streamer}
        thread = threading.Thread(target=lambda: torch.no_grad()(self.model.generate)(**kwargs))
        thread.start()
        yield from streamer
        thread.join()


def generate_file(model: str, data: str, out: str, max_new_tokens: int = 128, temperature: float = 0.0,
                  batch_size: int = 16) -> int:
    """Reply to every prompt of a data file (any format sftkit reads); write JSONL {prompt, reference, prediction}."""
    from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths

    opts = ConvertOptions()
    convs, refs = [], []
    for _, recs, _ in iter_converted(sources_from_paths([data], opts), opts, Report()):
        for rec in recs or []:
            if "messages" not in rec:
                continue
            msgs = rec["messages"]
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            convs.append(msgs[:last] if last is not None else msgs)
            refs.append(msgs[last]["content"] if last is not None else None)
    chat = Chat(model)
    preds = chat.generate(convs, max_new_tokens, temperature, batch_size=batch_size)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for conv, ref, pred in zip(convs, refs, preds, strict=True):
            fh.write(json.dumps({"prompt": conv, "reference": ref, "prediction": pred}, ensure_ascii=False) + "\n")
    return len(preds)


def export(run: str, out: str) -> Path:
    """Write a standalone model plain ``transformers`` loads: LoRA-family adapters merged into the base."""
    path = resolve(run)
    info = run_info(path)
    model = load_model(path, precision="fp32")
    if hasattr(model, "peft_config"):
        if any(c.peft_type.value != "LORA" for c in model.peft_config.values()):
            raise SftkitError(f"method {info.get('method')!r} adds virtual tokens and cannot be merged into the "
                              "base weights; load the run folder with sftkit (or peft) instead")
        model = model.merge_and_unload()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(path).save_pretrained(out_dir)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out_dir)
    return out_dir
