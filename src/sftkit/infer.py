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


def repl(chat: Chat, system: str | None = None, prompt: str | None = None, **generation) -> None:
    """Streaming chat on the terminal (``/clear`` forgets the history, ``/exit`` quits); one shot with ``prompt``."""
    base = [{"role": "system", "content": system}] if system else []
    history = list(base)
    while True:
        if prompt is not None:
            text = prompt
        else:
            try:
                text = input("you> ")
            except EOFError:
                return
            if text.strip() in ("/exit", "/quit"):
                return
            if text.strip() == "/clear":
                history = list(base)
                continue
        history.append({"role": "user", "content": text})
        print("" if prompt is not None else "bot> ", end="", flush=True)
        reply = ""
        for piece in chat.stream(history, **generation):
            reply += piece
            print(piece, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": reply})
        if prompt is not None:
            return


_PROMPT_KEYS = ("prompt", "question", "query", "instruction", "input", "text")
_REFERENCE_KEYS = ("output", "answer", "completion", "response", "reference")


def read_prompts(data: str) -> tuple[list[dict], list[dict]]:
    """Prompts of a file: ``{"prompt": ...}`` (or question / instruction + input / text) or a turn list
    (``messages`` / ``conversations``; a trailing assistant turn becomes the reference). Returns
    (items with ``messages`` and ``reference``, skipped lines with their reason)."""
    from sftkit.data.formats import Ctx, Options
    from sftkit.data.formats.turns import parse_turns
    from sftkit.data.readers import iter_files
    from sftkit.errors import RecordError

    items, skipped = [], []
    for item in iter_files([data]):
        raw = item.raw
        if item.error:
            skipped.append({"where": item.where(), "reason": item.error})
            continue
        try:
            key = next((k for k in ("messages", "conversations") if isinstance(raw.get(k), list)), None)
            if key:
                msgs, _ = parse_turns(raw[key], key, Ctx(Options()))
                reference = msgs.pop()["content"] if msgs and msgs[-1]["role"] == "assistant" else None
            else:
                if "instruction" in raw:
                    text = "\n".join(str(raw[k]) for k in ("instruction", "input") if raw.get(k))
                else:
                    text = next((raw[k] for k in _PROMPT_KEYS if isinstance(raw.get(k), str) and raw[k].strip()), None)
                if text is None:
                    raise RecordError("prompt", f"no prompt field (one of {', '.join(_PROMPT_KEYS)}, messages)")
                msgs = [{"role": "user", "content": text}]
                reference = next((raw[k] for k in _REFERENCE_KEYS if isinstance(raw.get(k), str)), None)
            if not msgs or msgs[-1]["role"] not in ("user", "tool"):
                raise RecordError(key or "prompt", "the conversation must end with a user turn to reply to")
        except RecordError as e:
            skipped.append({"where": item.where(), "field": e.field, "reason": e.reason})
            continue
        items.append({"messages": msgs, "reference": reference, "where": item.where()})
    return items, skipped


def generate_file(model: str, data: str, out: str, max_new_tokens: int = 128, temperature: float = 0.0,
                  batch_size: int = 16) -> tuple[int, list[dict]]:
    """Reply to every prompt of a file; write JSONL ``{prompt, messages, reference, prediction}``.
    Returns (number written, skipped lines with their reason)."""
    items, skipped = read_prompts(data)
    chat = Chat(model)
    preds = chat.generate([it["messages"] for it in items], max_new_tokens, temperature, batch_size=batch_size)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for it, pred in zip(items, preds, strict=True):
            fh.write(json.dumps({"prompt": it["messages"][-1]["content"], "messages": it["messages"],
                                 "reference": it["reference"], "prediction": pred}, ensure_ascii=False) + "\n")
    return len(preds), skipped


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
