"""Built-in qwen, qwen3 and llama3 render what the models' official Jinja templates render, text and ids.

The references are verbatim copies of the official ``chat_template`` texts (tests/tokenize/official/),
run by ``apply_chat_template``; sftkit's Python render and its Jinja twin must both equal them.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions, _jinja_messages
from sftkit.tokenize.templates import TEMPLATES

OFFICIAL = Path(__file__).parent / "official"
PAIRS = {"qwen": "qwen2_5", "qwen3": "qwen3", "llama3": "llama3_1"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "天气 weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {
             "a": {"type": "number"}, "b": {"type": "number"}}}}}]
TEXTS = ["Hello there", " leading space", "trailing space ", "\n  indented\n", "    def f():\n        return 1",
         "你好，世界", "line1\nline2", "2+2=4.", "  ", "混合 mixed 文本\n\n", "<think>not a tag</think>", "x"]


def official(name: str) -> str:
    """The official template text without the provenance comment above it."""
    text = (OFFICIAL / f"{PAIRS[name]}.jinja").read_text(encoding="utf-8")
    return text[text.index("-#}\n") + 4:]


def _call(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        args = json.dumps({"city": rng.choice(["北京", "Paris", " Oslo "])}, ensure_ascii=False)
        return {"type": "function", "function": {"name": "get_weather", "arguments": args}}
    args = json.dumps({"a": rng.randint(0, 9), "b": 2.5})
    return {"type": "function", "function": {"name": "add", "arguments": args}}


def random_conversation(rng: random.Random, one_call: bool) -> dict:
    """A conversation with optional system, tools, tool calls, grouped tool results and reasoning."""
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(TEXTS + ["", "你是助手。"])})
    tools = TOOLS if rng.random() < 0.5 else None
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": rng.choice(TEXTS)})
        if tools and rng.random() < 0.6:
            calls = [_call(rng) for _ in range(1 if one_call else rng.randint(1, 2))]
            turn = {"role": "assistant", "content": rng.choice(["", "", "Let me check."]), "tool_calls": calls}
            if rng.random() < 0.3:
                turn["reasoning_content"] = rng.choice(TEXTS)
            messages.append(turn)
            for _ in calls:
                messages.append({"role": "tool", "content": rng.choice(['{"temp": 20}', "12.5", " ok \n"])})
        turn = {"role": "assistant", "content": rng.choice(TEXTS)}
        if rng.random() < 0.4:
            turn["reasoning_content"] = rng.choice(TEXTS + ["\nstep 1\nstep 2\n"])
        messages.append(turn)
    return {"messages": messages, "tools": tools}


HAND = [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
    {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": " q "},
                  {"role": "assistant", "content": "\n\n  a  \n"}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nanswer"}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "r1"},
                  {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b", "reasoning_content": "r2"}]},
    {"tools": TOOLS, "messages": [
        {"role": "system", "content": "  sys  "}, {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [_call(random.Random(1))]},
        {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]},
]


def _cases(name: str) -> list[dict]:
    rng = random.Random(7)
    return HAND + [random_conversation(rng, one_call=name == "llama3") for _ in range(200)]


@pytest.mark.parametrize("name", PAIRS)
def test_builtin_text_and_ids_equal_official_template(tokenizer, name):
    template, reference = TEMPLATES[name], official(name)
    renderer = Renderer(tokenizer, template, RenderOptions(max_length=100_000))
    for rec in _cases(name):
        msgs, tools = _jinja_messages(rec["messages"]), rec.get("tools")
        expected = tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, chat_template=reference,
                                                 bos_token="<|begin_of_text|>")
        text, _ = renderer.render_text(rec)
        assert text == expected, rec
        twin = tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, chat_template=template.jinja())
        assert twin == expected, rec
        row = renderer([rec])[0]
        assert row["input_ids"] == tokenizer(expected, add_special_tokens=False)["input_ids"]
        prompt = tokenizer.apply_chat_template(msgs[:-1], tools=tools, tokenize=False, chat_template=reference,
                                               add_generation_prompt=True, bos_token="<|begin_of_text|>")
        assert renderer.prompt_text(rec["messages"][:-1], tools) == prompt


@pytest.mark.parametrize("name", PAIRS)
def test_builtin_masks_learn_each_reply_and_its_end_token(tokenizer, name):
    """Masks come from sftkit's spans, and equal the twin's {% generation %} mask from apply_chat_template."""
    template = TEMPLATES[name]
    tok = copy.copy(tokenizer)
    tok.chat_template = template.jinja()
    renderer = Renderer(tokenizer, template, RenderOptions(max_length=100_000))
    for rec in _cases(name)[:60]:
        row = renderer([rec])[0]
        expected = tok.apply_chat_template(_jinja_messages(rec["messages"]), tools=rec.get("tools"), tokenize=True,
                                           return_dict=True, return_assistant_tokens_mask=True)
        assert [int(x != IGNORE) for x in row["labels"]] == expected["assistant_masks"], rec
        learned = tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE])
        assert learned.endswith(template.eot)
        assert learned.count(template.eot) == sum(m["role"] == "assistant" for m in rec["messages"])


def test_qwen_defaults_and_tool_format_are_the_official_ones():
    text, _ = TEMPLATES["qwen"].render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    rec = HAND[4]
    text, _ = TEMPLATES["qwen"].render(rec["messages"], rec["tools"])
    assert "<tools>\n{" in text and "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>" in text


def test_llama3_refuses_two_calls_in_one_turn_like_the_official(tokenizer):
    rec = {"tools": TOOLS, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [_call(random.Random(1)), _call(random.Random(2))]},
        {"role": "tool", "content": "a"}, {"role": "tool", "content": "b"}, {"role": "assistant", "content": "ok"}]}
    with pytest.raises(Exception, match="single tool-calls"):
        tokenizer.apply_chat_template(_jinja_messages(rec["messages"]), tools=TOOLS, tokenize=False,
                                      chat_template=official("llama3"))
    renderer = Renderer(tokenizer, "llama3")
    assert renderer([rec]) == [None] and sum(renderer.stats.dropped.values()) == 1


@pytest.mark.parametrize("name", ["chatml", "alpaca", "plain"])
def test_format_string_templates_equal_their_jinja_twin(tokenizer, name):
    template = TEMPLATES[name]
    for rec in _cases("qwen"):
        msgs, tools = _jinja_messages(rec["messages"]), rec.get("tools")
        twin = tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, chat_template=template.jinja())
        assert template.render(rec["messages"], tools, tokenizer.eos_token)[0] == twin, rec
