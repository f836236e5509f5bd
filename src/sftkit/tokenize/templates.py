"""Built-in chat templates: a fast Python renderer and the equivalent Jinja ``chat_template``.

Each template renders canonical messages to text and reports the character spans a model must
learn: every assistant reply *including its end-of-turn token*, so fine-tuned models learn to stop.
The Jinja twin is what gets written into a tokenizer's ``chat_template``; tests check both give the
same tokens as ``tokenizer.apply_chat_template``.

``qwen`` (Qwen2.5-Instruct), ``qwen3`` (Qwen3, thinking) and ``llama3`` (Llama-3.1-Instruct) render
exactly what the models' official templates render (tests compare against verbatim copies of them).
How a family lays out system prompt, tools, tool calls and tool results is its ``layout`` function;
``chatml``, ``alpaca`` and ``plain`` share the format-string layout.

Reasoning (``reasoning_content`` of assistant turns) is rendered only by ``qwen3``, and, as in
Qwen3's official template, only for turns after the last user query; ``lost_fields`` says what a
template leaves out of a conversation so the renderer can count it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from jinja2.exceptions import TemplateError

from sftkit.tokenize.jinja_twins import (  # the official texts and the hand-written Jinja twins
    LLAMA3_JINJA,
    LLAMA_DATE,
    LLAMA_TOOLS,
    QWEN3_JINJA,
    QWEN25_JINJA,
    QWEN_TOOLS,
    QWEN_TOOLS_END,
    _jinja_str,
)

TOOL_HEADER = "\n\n# Tools\nYou may call functions. Their signatures:\n<tools>\n"
TOOL_FOOTER = "</tools>\nTo call one, reply with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>."

# (text, index of the assistant message whose reply + end-of-turn token this is, or None for context)
Segment = tuple[str, int | None]


@dataclass(frozen=True)
class Template:
    """A chat format; ``{content}`` is filled per message. ``layout`` renders a conversation to segments."""

    name: str
    bos: str  # written once at the start
    system: str  # format of a system turn
    user: str  # format of a user turn
    tool: str  # format of a tool result turn
    assistant_start: str  # before an assistant reply (also the generation prompt)
    eot: str  # end-of-turn token closing a reply (learned); "" -> the tokenizer's eos
    after_eot: str  # text after the end-of-turn token (not learned)
    default_system: str = ""
    # (template, messages, tools, end-of-turn string) -> segments; None: the format strings above
    layout: Callable[[Template, list[dict], list | None, str], list[Segment]] | None = None
    jinja_text: str = ""  # hand-written Jinja twin (layouts); "" -> built from the format strings
    thinks: bool = False  # renders ``reasoning_content`` (see ``lost_fields``)

    def end_token(self, eos: str) -> str:
        """The string that ends an assistant reply (the template's own token or the tokenizer's eos)."""
        return self.eot or eos

    def render(self, messages: list[dict], tools: list | None = None, eos: str = "",
               add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int, int]]]:
        """Return (text, spans): one (start, end, message index) character span per assistant reply."""
        segments = (self.layout or _format_layout)(self, messages, tools or None, self.end_token(eos))
        if add_generation_prompt:
            segments.append((self.assistant_start, None))
        spans, pos = [], 0
        for text, i in segments:
            if i is not None:
                spans.append((pos, pos + len(text), i))
            pos += len(text)
        return "".join(t for t, _ in segments), spans

    def lost_fields(self, messages: list[dict]) -> list[str]:
        """Fields of these messages the template does not render (``reasoning``, ``content``)."""
        lost = []
        kept = _qwen3_reasoning_kept(messages) if self.thinks else set()
        if any(m.get("reasoning_content") and i not in kept for i, m in enumerate(messages)):
            lost.append("reasoning")
        calls_with_text = any(m.get("tool_calls") and (m.get("content") or "").strip() for m in messages)
        if self.layout is _llama3_layout and calls_with_text:
            lost.append("content")  # Llama 3.1 renders a tool-call turn as the call alone
        return lost

    def jinja(self) -> str:
        """The same template as a Hugging Face ``chat_template`` (Jinja)."""
        if self.jinja_text:
            return self.jinja_text
        esc = _jinja_str
        system_block = (
            "{%- set ns = namespace(system=" + esc(self.default_system) + ", rest=messages) -%}"
            "{%- if messages and messages[0].role == 'system' -%}"
            "{%- set ns.system = messages[0].content -%}{%- set ns.rest = messages[1:] -%}{%- endif -%}"
            "{%- if tools -%}{%- set ns.system = ns.system + " + esc(TOOL_HEADER) + " -%}"
            "{%- for t in tools -%}{%- set ns.system = ns.system + (t | tojson) + '\\n' -%}{%- endfor -%}"
            "{%- set ns.system = ns.system + " + esc(TOOL_FOOTER) + " -%}{%- endif -%}"
        )

        def fill(fmt: str, content: str) -> str:
            a, _, b = fmt.partition("{content}")
            return esc(a) + " + " + content + " + " + esc(b)

        end = esc(self.eot) if self.eot else "eos_token"
        return (
            system_block + "{{- " + esc(self.bos) + " -}}"
            "{%- if ns.system -%}{{- " + fill(self.system, "ns.system") + " -}}{%- endif -%}"
            "{%- for m in ns.rest -%}"
            "{%- if m.role == 'assistant' -%}"
            "{{- " + esc(self.assistant_start) + " -}}{% generation %}{{- m.content or '' -}}"
            "{%- for c in m.tool_calls or [] -%}{{- '<tool_call>' + ({'name': c.function.name, 'arguments': "
            "c.function.arguments} | tojson) + '</tool_call>' -}}{%- endfor -%}"
            "{{- " + end + " -}}{% endgeneration %}{{- " + esc(self.after_eot) + " -}}"
            "{%- elif m.role == 'tool' -%}{{- " + fill(self.tool, "(m.content or '')") + " -}}"
            "{%- else -%}{{- " + fill(self.user, "(m.content or '')") + " -}}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- " + esc(self.assistant_start) + " -}}{%- endif -%}"
        )





def _arguments(call: dict):
    """Tool-call arguments as an object when they are a JSON string (what Hugging Face templates expect)."""
    args = call["function"].get("arguments")
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args


def format_tool_call(call: dict) -> str:
    """One OpenAI tool call as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""
    payload = {"name": call["function"]["name"], "arguments": _arguments(call)}
    return "<tool_call>" + json.dumps(payload, ensure_ascii=False) + "</tool_call>"


# -- format-string layout (chatml, alpaca, plain) ---------------------------------------------------
def _format_layout(t: Template, messages: list[dict], tools: list | None, end: str) -> list[Segment]:
    system, rest, first = t.default_system, messages, 0
    if messages and messages[0]["role"] == "system":
        system, rest, first = messages[0]["content"], messages[1:], 1
    if tools:
        system += TOOL_HEADER + "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in tools) + TOOL_FOOTER
    out: list[Segment] = [(t.bos, None)]
    if system:
        out.append((t.system.replace("{content}", system), None))
    for i, m in enumerate(rest, first):
        if m["role"] == "assistant":
            body = (m.get("content") or "") + "".join(map(format_tool_call, m.get("tool_calls") or []))
            out += [(t.assistant_start, None), (body + end, i), (t.after_eot, None)]
        else:
            fmt = {"system": t.system, "user": t.user, "tool": t.tool}[m["role"]]
            out.append((fmt.replace("{content}", m.get("content") or ""), None))
    return out


# -- Qwen2.5 and Qwen3 ------------------------------------------------------------------------------



def _qwen_tools(tools: list) -> str:
    return QWEN_TOOLS + "".join("\n" + json.dumps(x, ensure_ascii=False) for x in tools) + QWEN_TOOLS_END


def _qwen_call(call: dict, raw_strings: bool) -> str:
    args = _arguments(call)
    text = args if raw_strings and isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return '<tool_call>\n{"name": "' + call["function"]["name"] + '", "arguments": ' + text + "}\n</tool_call>"


def _qwen_turns(messages: list[dict], end: str, reply: Callable[[int, dict], str]) -> list[Segment]:
    """Qwen turns after the system block: tool results grouped into one user turn."""
    out: list[Segment] = []
    for i, m in enumerate(messages):
        role, content = m["role"], m.get("content") or ""
        if role == "assistant":
            out += [("<|im_start|>assistant\n", None), (reply(i, m) + end, i), ("\n", None)]
        elif role == "tool":
            opens = i == 0 or messages[i - 1]["role"] != "tool"
            closes = i == len(messages) - 1 or messages[i + 1]["role"] != "tool"
            out.append((("<|im_start|>user" if opens else "") + "\n<tool_response>\n" + content
                        + "\n</tool_response>" + ("<|im_end|>\n" if closes else ""), None))
        elif role != "system" or i > 0:
            out.append((f"<|im_start|>{role}\n{content}<|im_end|>\n", None))
    return out


def _qwen25_layout(t: Template, messages: list[dict], tools: list | None, end: str) -> list[Segment]:
    has_system = bool(messages) and messages[0]["role"] == "system"
    system = messages[0].get("content") or "" if has_system else t.default_system
    if tools:
        system += "\n\n" + _qwen_tools(tools)

    def reply(i: int, m: dict) -> str:
        calls = [_qwen_call(c, raw_strings=False) for c in m.get("tool_calls") or []]
        return "\n".join([m.get("content") or ""] + calls) if m.get("content") else "\n".join(calls)

    return [(f"<|im_start|>system\n{system}<|im_end|>\n", None), *_qwen_turns(messages, end, reply)]


def _last_query(messages: list[dict]) -> int:
    """Index of the last real user question (Qwen3 keeps reasoning only after it)."""
    for i in range(len(messages) - 1, -1, -1):
        c = messages[i].get("content")
        if messages[i]["role"] == "user" and isinstance(c, str) and not (
                c.startswith("<tool_response>") and c.endswith("</tool_response>")):
            return i
    return len(messages) - 1


def _qwen3_reasoning_kept(messages: list[dict]) -> set[int]:
    last = _last_query(messages)
    return {i for i in range(last + 1, len(messages))}


def _split_think(m: dict) -> tuple[str, str]:
    """(reasoning, content) as Qwen3 reads them: the field, or ``<think>...</think>`` inside the content."""
    content = m.get("content") if isinstance(m.get("content"), str) else ""
    if isinstance(m.get("reasoning_content"), str):
        return m["reasoning_content"], content
    if "</think>" in content:
        head, tail = content.split("</think>")[0], content.split("</think>")[-1]
        return head.rstrip("\n").split("<think>")[-1].lstrip("\n"), tail.lstrip("\n")
    return "", content


def _qwen3_layout(t: Template, messages: list[dict], tools: list | None, end: str) -> list[Segment]:
    has_system = bool(messages) and messages[0]["role"] == "system"
    head: list[Segment] = []
    if tools:
        system = (messages[0].get("content") or "") + "\n\n" if has_system else ""
        head.append((f"<|im_start|>system\n{system}{_qwen_tools(tools)}<|im_end|>\n", None))
    elif has_system:
        head.append((f"<|im_start|>system\n{messages[0].get('content') or ''}<|im_end|>\n", None))
    last_query = _last_query(messages)

    def reply(i: int, m: dict) -> str:
        reasoning, content = _split_think(m)
        body = content
        if i > last_query and (i == len(messages) - 1 or reasoning):
            body = "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n")
        calls = [_qwen_call(c, raw_strings=True) for c in m.get("tool_calls") or []]
        return body + "".join(("\n" if content or k else "") + c for k, c in enumerate(calls))

    return head + _qwen_turns(messages, end, reply)


# -- Llama 3.1 --------------------------------------------------------------------------------------



def _llama_header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


def _llama3_layout(t: Template, messages: list[dict], tools: list | None, end: str) -> list[Segment]:
    rest, first = messages, 0
    system = ""
    if messages and messages[0]["role"] == "system":
        system, rest, first = (messages[0].get("content") or "").strip(), messages[1:], 1
    env = "Environment: ipython\n" if tools else ""
    out: list[Segment] = [(t.bos + _llama_header("system") + env + LLAMA_DATE + system + "<|eot_id|>", None)]
    if tools:  # Llama 3.1 puts the tool definitions into the first user turn
        if not rest:
            raise TemplateError("Cannot put tools in the first user message when there's no first user message!")
        defs = "".join(json.dumps(x, ensure_ascii=False, indent=4) + "\n\n" for x in tools)
        out.append((_llama_header("user") + LLAMA_TOOLS + defs + (rest[0].get("content") or "").strip()
                    + "<|eot_id|>", None))
        rest, first = rest[1:], first + 1
    for i, m in enumerate(rest, first):
        role, content = m["role"], m.get("content") or ""
        if role in ("tool", "ipython"):
            out.append((_llama_header("ipython") + json.dumps(content, ensure_ascii=False) + "<|eot_id|>", None))
        elif m.get("tool_calls"):
            if len(m["tool_calls"]) != 1:
                raise TemplateError("This model only supports single tool-calls at once!")
            call = m["tool_calls"][0]
            body = ('{"name": "' + call["function"]["name"] + '", "parameters": '
                    + json.dumps(_arguments(call), ensure_ascii=False) + "}")
            out += [(_llama_header("assistant"), None), (body + end, i)]
        elif role == "assistant":
            out += [(_llama_header("assistant"), None), (content.strip() + end, i)]
        else:
            out.append((_llama_header(role) + content.strip() + "<|eot_id|>", None))
    return out


_CHATML = ("<|im_start|>system\n{content}<|im_end|>\n", "<|im_start|>user\n{content}<|im_end|>\n")
TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("chatml", "", *_CHATML, "<|im_start|>tool\n{content}<|im_end|>\n", "<|im_start|>assistant\n",
                 "<|im_end|>", "\n"),
        Template("qwen", "", *_CHATML, "", "<|im_start|>assistant\n", "<|im_end|>", "\n",
                 default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                 layout=_qwen25_layout, jinja_text=QWEN25_JINJA),
        Template("qwen3", "", *_CHATML, "", "<|im_start|>assistant\n", "<|im_end|>", "\n",
                 layout=_qwen3_layout, jinja_text=QWEN3_JINJA, thinks=True),
        Template("llama3", "<|begin_of_text|>", "", "", "", _llama_header("assistant"), "<|eot_id|>", "",
                 layout=_llama3_layout, jinja_text=LLAMA3_JINJA),
        Template("alpaca", "", "{content}\n\n", "### Instruction:\n{content}\n\n", "### Observation:\n{content}\n\n",
                 "### Response:\n", "", "\n\n"),
        Template("plain", "", "{content}\n", "{content}\n", "{content}\n", "", "", "\n"),
    )
}


def get_template(name: str) -> Template:
    """A built-in template by name, with the list of names when it does not exist."""
    if name not in TEMPLATES:
        from sftkit.errors import SftkitError

        raise SftkitError(f"unknown template {name!r}; built-in: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
