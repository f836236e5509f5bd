"""Render canonical records into ``input_ids`` and ``labels``: the one place loss masks are computed.

The record is rendered to text with character spans of what must be learned (every assistant reply
with its end-of-turn token; everything for text records), tokenized in one batch call, and the spans
mapped to tokens with ``char_to_token``. Tokenizing the whole text at once is what makes the ids equal
``tokenizer.apply_chat_template`` token for token.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from jinja2.exceptions import TemplateError

from sftkit.errors import SftkitError
from sftkit.schema import record_kind
from sftkit.tokenize.templates import TEMPLATES, Template, get_template

IGNORE = -100


@dataclass
class RenderOptions:
    """How records become training rows."""

    max_length: int = 1024
    overflow: str = "truncate"  # "truncate" or "drop" samples longer than max_length
    train_on_prompt: bool = False  # learn prompt tokens too
    mask_history: bool = False  # learn only the last assistant reply


@dataclass
class RenderStats:
    """What happened to the records: rendered, truncated, dropped (by reason)."""

    rendered: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"rendered": self.rendered, "truncated": self.truncated, "dropped": dict(self.dropped)}


def _jinja_messages(messages: list[dict]) -> list[dict]:
    """Canonical messages with tool-call arguments as objects (what Hugging Face templates expect)."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                args = c["function"].get("arguments")
                try:
                    args = json.loads(args) if isinstance(args, str) else args
                except json.JSONDecodeError:
                    pass
                calls.append({"type": "function", "function": {"name": c["function"]["name"], "arguments": args}})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


class Renderer:
    """Turns canonical records into ``{"input_ids", "labels"}`` rows with a tokenizer and a template.

    ``template`` is a built-in name, or None to use the tokenizer's own ``chat_template``.
    """

    def __init__(self, tokenizer, template: str | Template | None = None, options: RenderOptions | None = None):
        self.tokenizer = tokenizer
        self.template = get_template(template) if isinstance(template, str) else template
        if self.template is None:  # the tokenizer's own template: use our fast twin when it is a built-in one
            own = getattr(tokenizer, "chat_template", None)
            self.template = next((t for t in TEMPLATES.values() if own and t.jinja() == own), None)
        if self.template is None and not getattr(tokenizer, "chat_template", None):
            raise SftkitError("the tokenizer has no chat_template; set `template:` to a built-in one "
                              "(chatml, qwen, llama3, alpaca, plain)")
        self.options = options or RenderOptions()
        self.eos = tokenizer.eos_token or ""
        self.backend = tokenizer.backend_tokenizer  # the Rust tokenizer: batch encoding with char offsets
        self.stats = RenderStats()

    # -- text ----------------------------------------------------------------------------------
    def render_text(self, rec: dict) -> tuple[str, list[tuple[int, int]]]:
        """Text of a record and the character spans to learn."""
        if record_kind(rec) == "text":
            text = rec["text"] + self.eos
            return text, [(0, len(text))]
        messages = rec["messages"]
        if "chosen" in rec:  # preference data trains SFT on the chosen reply
            messages = [*messages, rec["chosen"]]
        text, spans = self._render(messages, rec.get("tools") or None)
        if self.options.mask_history:
            spans = spans[-1:]
        return text, [(s, e) for s, e, _ in spans]

    def prompt_text(self, messages: list[dict], tools: list | None = None) -> str:
        """The prompt for generation: the conversation followed by the assistant header."""
        if self.template is not None:
            return self.template.render(messages, tools, self.eos, add_generation_prompt=True)[0]
        return self.tokenizer.apply_chat_template(_jinja_messages(messages), tools=tools, tokenize=False,
                                                  add_generation_prompt=True)

    def _render(self, messages: list[dict], tools) -> tuple[str, list[tuple[int, int, int]]]:
        if self.template is not None:
            return self.template.render(messages, tools, self.eos)
        return self._render_jinja(messages, tools)

    def _render_jinja(self, messages: list[dict], tools) -> tuple[str, list[tuple[int, int, int]]]:
        """Spans from the tokenizer's own template by rendering growing prefixes of the conversation."""
        msgs = _jinja_messages(messages)
        apply = self.tokenizer.apply_chat_template
        full = apply(msgs, tools=tools, tokenize=False)
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = apply(msgs[:i], tools=tools, tokenize=False, add_generation_prompt=True) if i else ""
            end = apply(msgs[: i + 1], tools=tools, tokenize=False)
            if not (full.startswith(start) and full.startswith(end) and len(start) <= len(end)):
                raise SftkitError("the tokenizer's chat_template renders earlier turns differently once later "
                                  "turns exist, so masks cannot be placed; set `template:` to a built-in one")
            spans.append((len(start), len(end), i))
        return full, spans

    # -- ids -----------------------------------------------------------------------------------
    def __call__(self, records: list[dict]) -> list[dict | None]:
        """Rows for a batch of records; None where a record was dropped (counted in ``stats``)."""
        texts, spans = self._texts(records)
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        return [self._row(enc, sp) for enc, sp in zip(encodings, spans, strict=True)]

    def render_many(self, records: list[dict], chunk: int = 4096) -> Iterator[dict | None]:
        """Like ``__call__`` over many records, encoding the next chunk (Rust, GIL released) while the
        labels of the current one are built in Python."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = None
            for i in range(0, len(records), chunk):
                texts, spans = self._texts(records[i:i + chunk])
                future = pool.submit(self.backend.encode_batch, texts, add_special_tokens=False)
                if pending is not None:
                    yield from map(self._row, pending[0].result(), pending[1])
                pending = (future, spans)
            if pending is not None:
                yield from map(self._row, pending[0].result(), pending[1])

    def _texts(self, records: list[dict]) -> tuple[list[str], list[list[tuple[int, int]] | None]]:
        texts, spans = [], []
        for rec in records:
            if rec.get("label") is False:  # a KTO "undesirable" reply must not be imitated by SFT
                self.stats.dropped["kto_undesirable"] += 1
                texts.append("")
                spans.append(None)
                continue
            try:
                text, sp = self.render_text(rec)
            except TemplateError as e:  # the tokenizer's own template refused this record
                self.stats.dropped[f"template_error: {e}"[:120]] += 1
                text, sp = "", None
            texts.append(text)
            spans.append(sp)
        return texts, spans

    def _row(self, enc, spans: list[tuple[int, int]] | None) -> dict | None:
        if spans is None:
            return None  # already counted when rendering
        ids = enc.ids
        n = len(ids)
        opts = self.options
        limit = min(n, opts.max_length)
        if opts.train_on_prompt:
            labels = list(ids)
            learned = limit > 0
        else:
            labels = [IGNORE] * n
            learned = False
            for s, e in spans:
                if e <= s:
                    continue
                t0, t1 = _token_at(enc, s, n, forward=True), _token_at(enc, e - 1, n, forward=False) + 1
                if t0 is not None and t0 < t1:
                    labels[t0:t1] = ids[t0:t1]
                    learned = learned or t0 < limit
        if n > opts.max_length:
            if opts.overflow == "drop":
                self.stats.dropped["too_long"] += 1
                return None
            ids, labels = ids[:limit], labels[:limit]
            self.stats.truncated += 1
        if not learned:
            self.stats.dropped["nothing_to_learn"] += 1
            return None
        self.stats.rendered += 1
        return {"input_ids": ids, "labels": labels}


def _token_at(enc, char: int, n: int, forward: bool) -> int | None:
    """Token holding ``char``; at a span start, a token that begins before the span is left out."""
    t = enc.char_to_token(char)
    step = 1 if forward else -1
    probe = char
    while t is None and 0 <= probe + step < (enc.offsets[-1][1] if n else 0):
        probe += step
        t = enc.char_to_token(probe)
    if t is None:
        return None
    if forward and enc.token_to_chars(t)[0] < char:
        t += 1  # the token straddles the boundary: it belongs to the prompt
    return t
