"""The one way out: reply to conversations with a model, for chat, eval, ``generate`` and training-time eval.

``generate`` renders each conversation (with its tool definitions) through the same ``Renderer`` as
training, left-pads the prompt ids itself and calls ``model.generate``; ``stream`` does the same for one
conversation, yielding text as it comes. Each reply becomes a ``Completion``: the text cut before the
first stop string, tool-call text parsed back into OpenAI-style ``tool_calls``, why it finished and
token counts. The tokenizer is only read, never changed (no padding side, no backend padding state),
so rendering after generation equals rendering before.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sftkit.errors import SftkitError

DEFAULT_MAX_NEW_TOKENS = 256  # the one default of the CLI, eval configs and the Python API

_TOOL_CALL = re.compile(r"<tool_call>((?:(?!<tool_call>).)*?)</tool_call>", re.DOTALL)  # innermost block


@dataclass
class GenerationOptions:
    """How to sample replies (OpenAI-style names where one exists)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int | None = None  # None: no top-k filtering
    stop: list[str] = field(default_factory=list)  # the reply ends before the first of these strings
    seed: int | None = None  # sampling seed (the global torch RNG is left as it was)
    n: int = 1  # replies per conversation
    batch_size: int = 16  # sequences per model.generate call

    def __post_init__(self):
        checks = ((self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
                  (self.temperature >= 0, "temperature must be 0 (greedy) or more"),
                  (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
                  (self.top_k is None or self.top_k >= 1, "top_k must be at least 1 (or unset)"),
                  (self.n >= 1 and self.batch_size >= 1, "n and batch_size must be at least 1"),
                  (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"))
        for ok, message in checks:
            if not ok:
                raise SftkitError(message)


@dataclass
class Completion:
    """One reply: ``text`` as generated (cut before a stop string), parsed into ``content`` + ``tool_calls``."""

    text: str
    content: str
    tool_calls: list[dict]
    finish_reason: str  # "stop" (end of turn or a stop string), "length" or "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)  # the generated ids kept (through end of turn or stop)

    def message(self) -> dict:
        """The reply as a canonical assistant message (to append to the conversation)."""
        msg = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks -> (content outside them, OpenAI calls).

    A block that is not a JSON object with a string ``name`` stays in the content as written. A reply that is
    one bare JSON object ``{"name": ..., "parameters": {...}}`` (Llama 3.1's tool-call format) is one call."""
    bare = _bare_call(text)
    if bare is not None:
        return "", [bare]
    calls, content, pos = [], [], 0
    for m in _TOOL_CALL.finditer(text):
        call = _tool_call(m.group(1))
        if call is None:
            continue
        content.append(text[pos:m.start()])
        pos = m.end()
        calls.append(call)
    content.append(text[pos:])
    return "".join(content), calls


def _bare_call(text: str) -> dict | None:
    """Llama 3.1's tool call: the whole reply is ``{"name": str, "parameters": object}``."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}") and '"parameters"' in body):
        return None
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or set(obj) != {"name", "parameters"} or not isinstance(obj["parameters"], dict):
        return None
    return _tool_call(json.dumps({"name": obj["name"], "arguments": obj["parameters"]}, ensure_ascii=False))


def _tool_call(body: str) -> dict | None:
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", {})
    if not isinstance(args, str | dict):
        return None  # OpenAI arguments are a JSON object (or its text)
    args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": obj["name"], "arguments": args}}


def generate(model, tokenizer, renderer, conversations: list[list[dict]], tools: list[list | None] | None = None,
             options: GenerationOptions | None = None) -> list[Completion]:
    """Replies to conversations (each ending with a user or tool turn); ``tools[i]`` are conversation i's
    tool definitions. Returns ``n`` completions per conversation: conversation i's j-th at ``i * n + j``."""
    import torch

    opts = options or GenerationOptions()
    prompts = prompt_ids(renderer, conversations, tools)
    rows = [p for p in prompts for _ in range(opts.n)]
    eos, pad = eos_ids(model, tokenizer, renderer), _pad_id(tokenizer, model)
    out: list[Completion] = []
    with _generation_mode(model), _seeded(opts.seed, model.device), torch.no_grad():
        for i in range(0, len(rows), opts.batch_size):
            batch = rows[i:i + opts.batch_size]
            inputs = _left_padded(batch, pad, model.device)
            ids = model.generate(**inputs, **_sampling(opts, eos, pad, tokenizer))
            width = inputs["input_ids"].shape[1]
            out += [_completion(tokenizer, ids[k, width:].tolist(), len(p), opts.stop, eos)
                    for k, p in enumerate(batch)]
    for j, c in enumerate(out):
        i = j // opts.n
        _fit_content(renderer, conversations[i], tools[i] if tools else None, c)
    return out


def _fit_content(renderer, conversation: list[dict], tools, c: Completion) -> None:
    """Trim the separator a template writes itself between content and tool calls (Qwen's ``\n<tool_call>``)
    from ``c.content``, so that appending ``c.message()`` to the history re-renders the text the model wrote."""
    if not c.tool_calls or not c.content or c.content == c.content.rstrip():
        return
    try:
        head = renderer.prompt_text(conversation, tools)
        for cand in (c.content, c.content.rstrip("\n"), c.content.rstrip()):
            msg = {"role": "assistant", "content": cand, "tool_calls": c.tool_calls}
            if renderer.render_text({"messages": [*conversation, msg], "tools": tools})[0].startswith(head + c.text):
                c.content = cand
                return
    except Exception:  # noqa: BLE001  (a template that refuses the message: keep the parsed content as it is)
        return


def stream(model, tokenizer, renderer, conversation: list[dict], tools: list | None = None,
           options: GenerationOptions | None = None) -> TextStream:
    """One reply, yielded piece by piece; after the loop, ``.completion`` holds the parsed reply."""
    return TextStream(model, tokenizer, renderer, conversation, tools, options or GenerationOptions())


class TextStream:
    """Iterate for text pieces (never past a stop string); ``completion`` is set once the reply is done."""

    def __init__(self, model, tokenizer, renderer, conversation, tools, options: GenerationOptions):
        if options.n != 1:
            raise SftkitError("streaming makes one reply; use generate() for n > 1")
        self.args = (model, tokenizer, renderer, conversation, tools, options)
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        model, tokenizer, renderer, conversation, tools, opts = self.args
        prompt = prompt_ids(renderer, [conversation], [tools])[0]
        eos, pad = eos_ids(model, tokenizer, renderer), _pad_id(tokenizer, model)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result = {}
        with _generation_mode(model), _seeded(opts.seed, model.device):
            inputs = _left_padded([prompt], pad, model.device)
            kwargs = {**inputs, **_sampling(opts, eos, pad, tokenizer), "streamer": streamer}
            def run():
                try:
                    with torch.no_grad():
                        result["ids"] = model.generate(**kwargs)
                except BaseException as e:  # re-raised below; ending the streamer keeps the loop from waiting forever
                    result["error"] = e
                    streamer.end()

            thread = threading.Thread(target=run)
            thread.start()
            text, sent = "", 0
            for piece in streamer:
                text += piece
                cut = _stop_at(text, opts.stop)
                safe = cut if cut is not None else len(text) - _held_back(text, opts.stop)
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
            thread.join()
        if "error" in result:
            raise result["error"]
        self.completion = _completion(tokenizer, result["ids"][0, len(prompt):].tolist(), len(prompt), opts.stop, eos)
        _fit_content(renderer, conversation, tools, self.completion)
        final = self.completion.text
        if final.startswith(text[:sent]) and len(final) > sent:
            yield final[sent:]  # text held back in case it began a stop string that never came


def prompt_ids(renderer, conversations: list[list[dict]], tools: list | None = None) -> list[list[int]]:
    """Token ids of each generation prompt, encoded as the renderer encodes training rows (no padding)."""
    tools = tools if tools is not None else [None] * len(conversations)
    if len(tools) != len(conversations):
        raise SftkitError(f"{len(tools)} tool lists for {len(conversations)} conversations; give one per conversation")
    texts = [renderer.prompt_text(c, t or None) for c, t in zip(conversations, tools, strict=True)]
    # a backend left padded by another caller still yields the bare ids: keep the attended tokens only
    return [[i for i, m in zip(e.ids, e.attention_mask, strict=True) if m]
            for e in renderer.backend.encode_batch(texts, add_special_tokens=False)]


def _left_padded(rows: list[list[int]], pad: int, device) -> dict:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        if r:
            ids[k, width - len(r):] = torch.tensor(r)
            mask[k, width - len(r):] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _sampling(opts: GenerationOptions, eos: list[int], pad: int, tokenizer) -> dict:
    kw = {"max_new_tokens": opts.max_new_tokens, "eos_token_id": eos, "pad_token_id": pad}
    if opts.temperature > 0:
        kw.update(do_sample=True, temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k or 0)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if opts.stop:  # transformers reads the vocabulary only; the tokenizer is not changed
        kw.update(stop_strings=list(opts.stop), tokenizer=tokenizer)
    return kw


def eos_ids(model, tokenizer, renderer) -> list[int]:
    """Tokens that end a reply: the model's generation config, the tokenizer's eos, the template's end of turn."""
    ids = []
    gen = getattr(model, "generation_config", None)
    configured = getattr(gen, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    template = getattr(renderer, "template", None)
    if template is not None and template.end_token(tokenizer.eos_token or ""):
        end = renderer.backend.encode(template.end_token(tokenizer.eos_token or ""), add_special_tokens=False).ids
        if len(end) == 1:
            ids += end
    return list(dict.fromkeys(i for i in ids if i is not None))


def _pad_id(tokenizer, model) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return eos_ids(model, tokenizer, None)[0]


def _completion(tokenizer, new: list[int], prompt_len: int, stop: list[str], eos: list[int]) -> Completion:
    """Parse one row of generated ids: cut at end of turn or the first stop string, parse tool calls."""
    end = next((k for k, t in enumerate(new) if t in eos), None)
    tokens = new if end is None else new[:end]
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = _stop_at(text, stop)
    if cut is not None:
        text, reason, used = text[:cut], "stop", _tokens_until_stop(tokenizer, tokens, stop)
    elif end is not None:
        reason, used = "stop", end + 1
    else:
        reason, used = "length", len(tokens)
    content, calls = parse_tool_calls(text)
    if calls and reason == "stop":
        reason = "tool_calls"
    return Completion(text, content, calls, reason, prompt_len, used, list(new[:used]))


def _stop_at(text: str, stop: list[str]) -> int | None:
    """Where the first stop string begins in ``text`` (None: none occurs)."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stop: list[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


def _tokens_until_stop(tokenizer, tokens: list[int], stop: list[str]) -> int:
    """How many generated tokens it took to complete the first stop string (binary search over prefixes)."""
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if _stop_at(tokenizer.decode(tokens[:mid], skip_special_tokens=True), stop) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo


@contextmanager
def _generation_mode(model):
    """Eval mode and a padding-aware attention for the call; the training state comes back afterwards."""
    from sftkit.tokenize.packing import ATTENTION

    was = model.training
    packed = getattr(model.config, "_attn_implementation", None) == ATTENTION
    model.eval()
    if packed:  # packed training attends per sample via cu_seq_lens; padded generation needs a real mask
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if packed:
            model.set_attn_implementation(ATTENTION)
        model.train(was)


@contextmanager
def _seeded(seed: int | None, device):
    """Sample from ``seed`` without moving the global RNG (a training run keeps its random stream)."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
