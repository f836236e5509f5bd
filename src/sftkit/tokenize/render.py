"""Render canonical records into ``input_ids`` and ``labels``: the one place loss masks are computed.

The record is rendered to text with character spans of what must be learned (every assistant reply
with its end-of-turn token; everything for text records), tokenized in one batch call, and the spans
mapped to tokens with ``char_to_token``. Tokenizing the whole text at once is what makes the ids equal
``tokenizer.apply_chat_template`` token for token.

Mask rules (the same as ``apply_chat_template(return_assistant_tokens_mask=True)``):
- a token is learned when it holds any character of a learned span, so a token that merges the
  header's newline with a reply starting with whitespace (code indentation) is learned;
- an assistant message with ``loss_weight: 0`` is context only; ``mask_history`` keeps the last reply
  only; ``train_on_prompt`` learns everything except replies with ``loss_weight: 0``;
- with a tokenizer's own template the template's ``{% generation %}`` blocks give the spans when it has
  them; otherwise spans come from rendering growing prefixes, cut right after the end-of-turn token.

Records are never half-rendered silently: a record with media in a text-only run is dropped and counted
(``media_in_text_only_run``), and a conversation whose template leaves out reasoning (or the text of a
tool-call turn, Llama 3.1) is counted in ``stats.not_rendered``. Rows keep the record's ``origin``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import render_jinja_template

from sftkit.errors import SftkitError
from sftkit.schema import MEDIA_KINDS, record_kind
from sftkit.tokenize.templates import TEMPLATES, Template, get_template

IGNORE = -100


@dataclass
class RenderOptions:
    """How records become training rows."""

    max_length: int = 1024
    overflow: str = "truncate"  # "truncate" or "drop" samples longer than max_length
    train_on_prompt: bool = False  # learn prompt tokens too
    mask_history: bool = False  # learn only the last assistant reply
    allow_media: bool = False  # records with images/videos/audios; False: dropped and counted (text-only run)


@dataclass
class RenderStats:
    """What happened to the records: rendered, truncated, dropped (by reason)."""

    rendered: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    not_rendered: Counter = field(default_factory=Counter)  # records rendered without a field ("reasoning")

    def to_dict(self) -> dict:
        return {"rendered": self.rendered, "truncated": self.truncated, "dropped": dict(self.dropped),
                "not_rendered": dict(self.not_rendered)}


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
                              f"({', '.join(TEMPLATES)})")
        self.options = options or RenderOptions()
        self.eos = tokenizer.eos_token or ""
        self.backend = tokenizer.backend_tokenizer  # the Rust tokenizer: batch encoding with char offsets
        self.stats = RenderStats()
        self.drops: list[dict] = []  # {origin, reason} of every record dropped while rendering

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
        for name in self._lost(messages, text):
            self.stats.not_rendered[name] += 1
        if self.options.mask_history:
            spans = spans[-1:]
        masked = [(s, e) for s, e, i in spans if messages[i].get("loss_weight", 1) == 0]
        if self.options.train_on_prompt:
            return text, _complement(len(text), masked)
        return text, [(s, e) for s, e, i in spans if messages[i].get("loss_weight", 1) != 0]

    def _lost(self, messages: list[dict], text: str) -> list[str]:
        """Fields the template left out (a tokenizer's own template: reasoning not found in the text)."""
        if self.template is not None:
            return self.template.lost_fields(messages)
        gone = any(m.get("reasoning_content") and m["reasoning_content"].strip() not in text for m in messages)
        return ["reasoning"] if gone else []

    def prompt_text(self, messages: list[dict], tools: list | None = None) -> str:
        """The prompt for generation: the conversation (with its tools) followed by the assistant header."""
        if self.template is not None:
            return self.template.render(messages, tools, self.eos, add_generation_prompt=True)[0]
        return self.tokenizer.apply_chat_template(_jinja_messages(messages), tools=tools or None, tokenize=False,
                                                  add_generation_prompt=True)

    def _render(self, messages: list[dict], tools) -> tuple[str, list[tuple[int, int, int]]]:
        if self.template is not None:
            return self.template.render(messages, tools, self.eos)
        return self._render_jinja(messages, tools)

    def _render_jinja(self, messages: list[dict], tools) -> tuple[str, list[tuple[int, int, int]]]:
        """Spans from the tokenizer's own template: its ``{% generation %}`` blocks when it has one per
        assistant turn, else rendering growing prefixes, each span cut right after its end-of-turn token."""
        msgs = _jinja_messages(messages)
        replies = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        template = self.tokenizer.chat_template
        if re.search(r"\{%-?\s*generation\s*-?%\}", template):
            plain = [{k: v for k, v in m.items() if v is not None} for m in msgs]  # as apply_chat_template does
            (full,), (blocks,) = render_jinja_template([plain], tools=tools, chat_template=template,
                                                       return_assistant_tokens_mask=True,
                                                       **self.tokenizer.special_tokens_map)
            if len(blocks) == len(replies):
                return full, [(s, e, i) for (s, e), i in zip(blocks, replies, strict=True)]
        apply = self.tokenizer.apply_chat_template
        full = apply(msgs, tools=tools, tokenize=False)
        spans = []
        for i in replies:
            start = apply(msgs[:i], tools=tools, tokenize=False, add_generation_prompt=True) if i else ""
            end = apply(msgs[: i + 1], tools=tools, tokenize=False)
            if not (full.startswith(start) and full.startswith(end) and len(start) <= len(end)):
                raise SftkitError("the tokenizer's chat_template renders earlier turns differently once later "
                                  "turns exist, so masks cannot be placed; set `template:` to a built-in one")
            spans.append((len(start), len(start) + self._through_end_token(full[len(start):len(end)]), i))
        return full, spans

    def _through_end_token(self, reply: str) -> int:
        """Length of a rendered reply up to and including its last special token (the end-of-turn token):
        what a template writes after it (a newline) belongs to the next turn's context."""
        ends = [reply.rfind(t) + len(t) for t in self.tokenizer.all_special_tokens if t and t in reply]
        return max(ends) if ends else len(reply)

    # -- ids -----------------------------------------------------------------------------------
    def __call__(self, records: list[dict]) -> list[dict | None]:
        """Rows for a batch of records; None where a record was dropped (counted in ``stats``)."""
        texts, spans = self._texts(records)
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        return list(map(self._row, encodings, spans, records))

    def render_many(self, records: list[dict], chunk: int = 4096) -> Iterator[dict | None]:
        """Like ``__call__`` over many records, encoding the next chunk (Rust, GIL released) while the
        labels of the current one are built in Python."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = None
            for i in range(0, len(records), chunk):
                part = records[i:i + chunk]
                texts, spans = self._texts(part)
                future = pool.submit(self.backend.encode_batch, texts, add_special_tokens=False)
                if pending is not None:
                    yield from map(self._row, pending[0].result(), *pending[1:])
                pending = (future, spans, part)
            if pending is not None:
                yield from map(self._row, pending[0].result(), *pending[1:])

    def _drop(self, rec: dict, reason: str) -> None:
        """Count a dropped record and keep where it came from (``self.drops``), so no drop is untraceable."""
        self.stats.dropped[reason] += 1
        self.drops.append({"origin": rec.get("origin"), "reason": reason})

    def _texts(self, records: list[dict]) -> tuple[list[str], list[list[tuple[int, int]] | None]]:
        texts, spans = [], []
        for rec in records:
            if rec.get("label") is False:  # a KTO "undesirable" reply must not be imitated by SFT
                self._drop(rec, "kto_undesirable")
                texts.append("")
                spans.append(None)
                continue
            if not self.options.allow_media and any(rec.get(k) for k in MEDIA_KINDS):
                self._drop(rec, "media_in_text_only_run")  # never train "<image>" as literal text
                texts.append("")
                spans.append(None)
                continue
            try:
                text, sp = self.render_text(rec)
            except TemplateError as e:  # the tokenizer's own template refused this record
                self._drop(rec, f"template_error: {e}"[:120])
                text, sp = "", None
            texts.append(text)
            spans.append(sp)
        return texts, spans

    def _row(self, enc, spans: list[tuple[int, int]] | None, rec: dict) -> dict | None:
        if spans is None:
            return None  # already counted when rendering
        ids = enc.ids
        n = len(ids)
        opts = self.options
        limit = min(n, opts.max_length)
        labels = [IGNORE] * n
        learned = False
        for s, e in spans:
            t0, t1 = _token_at(enc, s, n, forward=True), _token_at(enc, e - 1, n, forward=False)
            if e > s and t0 is not None and t1 is not None and t0 <= t1:
                labels[t0:t1 + 1] = ids[t0:t1 + 1]
                learned = learned or t0 < limit
        if n > opts.max_length:
            if opts.overflow == "drop":
                self._drop(rec, "too_long")
                return None
            ids, labels = ids[:limit], labels[:limit]
            self.stats.truncated += 1
        if not learned:
            self._drop(rec, "nothing_to_learn")
            return None
        self.stats.rendered += 1
        row = {"input_ids": ids, "labels": labels}
        if "origin" in rec:
            row["origin"] = rec["origin"]
        return row


def _complement(n: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[0, n)`` outside the sorted, disjoint spans ``holes``."""
    out, pos = [], 0
    for s, e in holes:
        out.append((pos, s))
        pos = e
    out.append((pos, n))
    return [(s, e) for s, e in out if e > s]


def _token_at(enc, char: int, n: int, forward: bool) -> int | None:
    """Token holding ``char`` (searching forward or backward past characters no token holds).

    A token that straddles a span boundary holds characters of the span, so it is learned, as in
    ``apply_chat_template``'s assistant mask: a reply starting with whitespace merged into the header's
    newline is still learned.
    """
    t = enc.char_to_token(char)
    step = 1 if forward else -1
    probe = char
    while t is None and 0 <= probe + step < (enc.offsets[-1][1] if n else 0):
        probe += step
        t = enc.char_to_token(probe)
    return t
