"""Built-in chat templates: a fast Python renderer and the equivalent Jinja ``chat_template``.

Each template renders canonical messages to text and reports the character spans a model must
learn: every assistant reply *including its end-of-turn token*, so fine-tuned models learn to stop.
The Jinja twin is what gets written into a tokenizer's ``chat_template``; tests check both give the
same tokens as ``tokenizer.apply_chat_template``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

TOOL_HEADER = "\n\n# Tools\nYou may call functions. Their signatures:\n<tools>\n"
TOOL_FOOTER = "</tools>\nTo call one, reply with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>."


@dataclass(frozen=True)
class Template:
    """A chat format; ``{role}`` / ``{content}`` are filled per message."""

    name: str
    bos: str  # written once at the start
    system: str  # format of a system turn
    user: str  # format of a user turn
    tool: str  # format of a tool result turn
    assistant_start: str  # before an assistant reply (also the generation prompt)
    eot: str  # end-of-turn token closing a reply (learned); "" -> the tokenizer's eos
    after_eot: str  # text after the end-of-turn token (not learned)
    default_system: str = ""

    def end_token(self, eos: str) -> str:
        """The string that ends an assistant reply (the template's own token or the tokenizer's eos)."""
        return self.eot or eos

    def render(self, messages: list[dict], tools: list | None = None, eos: str = "",
               add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int, int]]]:
        """Return (text, spans): one (start, end, message index) character span per assistant reply."""
        parts, spans, pos = [self.bos], [], len(self.bos)
        msgs = _with_system(messages, tools, self.default_system)
        end = self.end_token(eos)
        for i, m in enumerate(msgs):
            role = m["role"]
            if role == "assistant":
                head = self.assistant_start
                body = m.get("content") or ""
                for call in m.get("tool_calls") or []:
                    body += format_tool_call(call)
                piece = head + body + end
                spans.append((pos + len(head), pos + len(piece), i))
                piece += self.after_eot
            else:
                fmt = {"system": self.system, "user": self.user, "tool": self.tool}[role]
                piece = fmt.replace("{content}", m.get("content") or "")
            parts.append(piece)
            pos += len(piece)
        if add_generation_prompt:
            parts.append(self.assistant_start)
        return "".join(parts), spans

    def jinja(self) -> str:
        """The same template as a Hugging Face ``chat_template`` (Jinja)."""
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


def _jinja_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _with_system(messages: list[dict], tools: list | None, default: str) -> list[dict]:
    """Fold tool definitions into the system turn (adding one when tools or a default system exist)."""
    system = default
    rest = messages
    if messages and messages[0]["role"] == "system":
        system, rest = messages[0]["content"], messages[1:]
    if tools:
        system += TOOL_HEADER + "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools) + TOOL_FOOTER
    return ([{"role": "system", "content": system}] if system else []) + list(rest)


def format_tool_call(call: dict) -> str:
    """One OpenAI tool call as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""
    fn = call["function"]
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    return "<tool_call>" + json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False) + "</tool_call>"


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("chatml", "", "<|im_start|>system\n{content}<|im_end|>\n", "<|im_start|>user\n{content}<|im_end|>\n",
                 "<|im_start|>tool\n{content}<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>", "\n"),
        Template("qwen", "", "<|im_start|>system\n{content}<|im_end|>\n", "<|im_start|>user\n{content}<|im_end|>\n",
                 "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n", "<|im_start|>assistant\n",
                 "<|im_end|>", "\n", default_system="You are a helpful assistant."),
        Template("llama3", "<|begin_of_text|>", "<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
                 "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
                 "<|start_header_id|>ipython<|end_header_id|>\n\n{content}<|eot_id|>",
                 "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", ""),
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
