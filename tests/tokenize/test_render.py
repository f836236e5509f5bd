"""Rendering: ids equal apply_chat_template token for token; masks match the template's generation spans."""

from __future__ import annotations

import copy

import pytest

from sftkit.models import load_tokenizer
from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions, _jinja_messages
from sftkit.tokenize.templates import TEMPLATES

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CONVERSATIONS = {
    "single": {"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! 你好"}]},
    "multi_system": {"messages": [
        {"role": "system", "content": "你是一个乐于助人的助手。"}, {"role": "user", "content": "1+1=?"},
        {"role": "assistant", "content": "2"}, {"role": "user", "content": "\n  and 2+2?"},
        {"role": "assistant", "content": " 4\n"}]},
    "tool_call": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "北京天气？"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 20}"}, {"role": "assistant", "content": "北京现在20度。"}]},
}


def _hf(tokenizer, rec, template):
    tok = copy.copy(tokenizer)
    tok.chat_template = template.jinja()
    return tok.apply_chat_template(_jinja_messages(rec["messages"]), tools=rec.get("tools") or None, tokenize=True,
                                   return_dict=True, return_assistant_tokens_mask=True)


@pytest.mark.parametrize("conv", CONVERSATIONS)
@pytest.mark.parametrize("name", TEMPLATES)
def test_ids_and_masks_equal_apply_chat_template(tokenizer, name, conv):
    rec, template = CONVERSATIONS[conv], TEMPLATES[name]
    expected = _hf(tokenizer, rec, template)
    row = Renderer(tokenizer, template)([rec])[0]
    assert row["input_ids"] == expected["input_ids"]
    learned = [int(x != IGNORE) for x in row["labels"]]
    assert learned == expected["assistant_masks"]
    assert all(lab in (IGNORE, tid) for lab, tid in zip(row["labels"], row["input_ids"], strict=True))


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_reply_ends_with_end_of_turn_and_tools_are_masked(tokenizer, name):
    rec = CONVERSATIONS["tool_call"]
    template = TEMPLATES[name]
    row = Renderer(tokenizer, template)([rec])[0]
    spans, cur = [], []
    for tid, lab in zip(row["input_ids"], row["labels"], strict=True):
        if lab != IGNORE:
            cur.append(tid)
        elif cur:
            spans.append(tokenizer.decode(cur))
            cur = []
    if cur:
        spans.append(tokenizer.decode(cur))
    end = template.end_token(tokenizer.eos_token)
    assert len(spans) == 2 and all(s.endswith(end) for s in spans)
    # each family writes calls its own way (llama3: bare JSON); qwen3 opens the last reply with a think block
    assert "get_weather" in spans[0] and spans[1].endswith("北京现在20度。" + end)
    assert "20}" not in "".join(spans)  # the tool result is never learned


def test_tokenizer_own_template_with_generation_blocks_matches(tokenizer):
    """A template that is not built in (here ChatML with a twist) is masked by its {% generation %} blocks."""
    tok = copy.copy(tokenizer)
    tok.chat_template = TEMPLATES["chatml"].jinja().replace("<|im_start|>assistant", "<|im_start|>bot")
    rec = CONVERSATIONS["multi_system"]
    renderer = Renderer(tok)
    assert renderer.template is None
    row = renderer([rec])[0]
    expected = tok.apply_chat_template(rec["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert row["input_ids"] == expected["input_ids"]
    assert [int(x != IGNORE) for x in row["labels"]] == expected["assistant_masks"]


# A ChatML-like template as models ship it (no {% generation %}), and the same with the blocks marked
OWN = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' %}"
       "{% generation %}{{ m.content + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
       "{% else %}{{ m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_tokenizer_own_template_without_generation_blocks_learns_reply_and_end_token_only(tokenizer, conv):
    """Prefix rendering cuts each span after the end-of-turn token: the "\\n" after it is not learned."""
    rec = CONVERSATIONS[conv]
    plain, marked = copy.copy(tokenizer), copy.copy(tokenizer)
    plain.chat_template = OWN.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    marked.chat_template = OWN
    row = Renderer(plain)([rec])[0]
    expected = marked.apply_chat_template(_jinja_messages(rec["messages"]), tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
    assert row["input_ids"] == expected["input_ids"]
    assert [int(x != IGNORE) for x in row["labels"]] == expected["assistant_masks"]


def test_mask_history_train_on_prompt_and_text(tokenizer):
    rec = CONVERSATIONS["multi_system"]
    full = Renderer(tokenizer, "chatml")([rec])[0]
    last = Renderer(tokenizer, "chatml", RenderOptions(mask_history=True))([rec])[0]
    everything = Renderer(tokenizer, "chatml", RenderOptions(train_on_prompt=True))([rec])[0]
    n_full = sum(x != IGNORE for x in full["labels"])
    n_last = sum(x != IGNORE for x in last["labels"])
    assert 0 < n_last < n_full
    assert everything["labels"] == everything["input_ids"]
    text = Renderer(tokenizer, "chatml")([{"text": "纯文本 plain text", "meta": {}}])[0]
    assert text["labels"] == text["input_ids"] and text["input_ids"][-1] == tokenizer.eos_token_id


def test_overlong_truncated_or_dropped_and_counted(tokenizer):
    rec = {"messages": [{"role": "user", "content": "hi " * 10}, {"role": "assistant", "content": "ok " * 100}]}
    r = Renderer(tokenizer, "chatml", RenderOptions(max_length=80))
    row = r([rec])[0]
    assert len(row["input_ids"]) == 80 and r.stats.truncated == 1
    d = Renderer(tokenizer, "chatml", RenderOptions(max_length=80, overflow="drop"))
    assert d([rec]) == [None] and d.stats.dropped["too_long"] == 1
    short = Renderer(tokenizer, "chatml", RenderOptions(max_length=12))
    assert short([rec]) == [None] and short.stats.dropped["nothing_to_learn"] == 1  # prompt alone fills the budget


def test_kto_undesirable_and_template_errors_are_dropped_and_counted(tokenizer):
    good = CONVERSATIONS["single"]
    bad_kto = {**good, "label": False}
    r = Renderer(tokenizer, "chatml")
    rows = r([good, bad_kto, {**good, "label": True}])
    assert rows[1] is None and rows[0] is not None and rows[2] is not None
    assert r.stats.dropped["kto_undesirable"] == 1
    tok = copy.copy(tokenizer)
    tok.chat_template = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}" \
                        "{{ m.content }}{% endfor %}"
    strict = Renderer(tok)
    rows = strict([CONVERSATIONS["multi_system"], good])
    assert rows[0] is None and rows[1] is not None
    assert any(k.startswith("template_error") for k in strict.stats.dropped)


@pytest.mark.parametrize("reply", [" x", "\nx", "    code()", "\n\n    indented", "\t tab"])
@pytest.mark.parametrize("name", ["chatml", "qwen", "qwen3", "alpaca", "plain"])
def test_reply_starting_with_whitespace_is_learned_like_apply_chat_template(tokenizer, name, reply):
    """A token merging the header's newline with the reply's first characters is learned (it predicts them)."""
    rec = {"messages": [{"role": "user", "content": "show me"}, {"role": "assistant", "content": reply}]}
    row = Renderer(tokenizer, name)([rec])[0]
    expected = _hf(tokenizer, rec, TEMPLATES[name])
    assert row["input_ids"] == expected["input_ids"]
    assert [int(x != IGNORE) for x in row["labels"]] == expected["assistant_masks"]


def test_code_indentation_token_is_learned(tokenizer):
    rec = {"messages": [{"role": "user", "content": "code"}, {"role": "assistant", "content": "    return 1"}]}
    row = Renderer(tokenizer, "chatml")([rec])[0]
    first = next(i for i, lab in enumerate(row["labels"]) if lab != IGNORE)
    assert tokenizer.decode(row["input_ids"][first]).startswith("\n")  # "\n" + indentation is one token
    assert tokenizer.decode(row["input_ids"][first - 1]) == "assistant"


def _learned_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE])


def test_loss_weight_masks_a_reply_and_keeps_mask_history_and_train_on_prompt(tokenizer):
    msgs = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "first", "loss_weight": 0},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "second", "loss_weight": 1}]
    rec = {"messages": msgs}
    assert _learned_text(tokenizer, Renderer(tokenizer, "chatml")([rec])[0]) == "second<|im_end|>"
    both = {"messages": [{k: v for k, v in m.items() if k != "loss_weight"} for m in msgs]}
    assert _learned_text(tokenizer, Renderer(tokenizer, "chatml")([both])[0]) == "first<|im_end|>second<|im_end|>"
    history = Renderer(tokenizer, "chatml", RenderOptions(mask_history=True))
    assert _learned_text(tokenizer, history([both])[0]) == "second<|im_end|>"
    prompt = Renderer(tokenizer, "chatml", RenderOptions(train_on_prompt=True))([rec])[0]
    learned = _learned_text(tokenizer, prompt)
    assert "first" not in learned and "q1" in learned and "second" in learned
    only_masked = {"messages": msgs[:2]}
    r = Renderer(tokenizer, "chatml")
    assert r([only_masked]) == [None] and r.stats.dropped["nothing_to_learn"] == 1


def test_media_in_a_text_only_run_is_dropped_and_counted(tokenizer):
    rec = {"messages": [{"role": "user", "content": "<image>What is it?"}, {"role": "assistant", "content": "A cat."}],
           "images": ["/data/cat.png"]}
    r = Renderer(tokenizer, "chatml")
    assert r([rec, CONVERSATIONS["single"]])[0] is None
    assert r.stats.dropped["media_in_text_only_run"] == 1 and r.stats.rendered == 1
    for kind in ("videos", "audios"):
        assert Renderer(tokenizer, "chatml")([{**CONVERSATIONS["single"], kind: ["/a.mp4"]}]) == [None]
    assert Renderer(tokenizer, "chatml", RenderOptions(allow_media=True))([rec])[0] is not None


def test_rows_keep_the_record_origin(tokenizer):
    origin = {"file": "/data/a.jsonl", "line": 7, "index": 6}
    r = Renderer(tokenizer, "chatml")
    rows = r([{**CONVERSATIONS["single"], "origin": origin}, CONVERSATIONS["single"]])
    assert rows[0]["origin"] == origin and "origin" not in rows[1]
    assert list(r.render_many([{**CONVERSATIONS["single"], "origin": origin}]))[0]["origin"] == origin


def test_reasoning_rendered_by_qwen3_and_counted_where_not_rendered(tokenizer):
    rec = {"messages": [{"role": "user", "content": "q1"},
                        {"role": "assistant", "content": "a1", "reasoning_content": "early thought"},
                        {"role": "user", "content": "q2"},
                        {"role": "assistant", "content": "a2", "reasoning_content": "late thought"}]}
    qwen3 = Renderer(tokenizer, "qwen3")
    learned = _learned_text(tokenizer, qwen3([rec])[0])
    assert "<think>\nlate thought\n</think>\n\na2<|im_end|>" in learned
    assert "early thought" not in learned  # Qwen3 drops reasoning before the last user query
    assert qwen3.stats.not_rendered["reasoning"] == 1
    last_only = {"messages": rec["messages"][2:]}
    r = Renderer(tokenizer, "qwen3")
    r([last_only])
    assert r.stats.not_rendered["reasoning"] == 0
    chatml = Renderer(tokenizer, "chatml")
    assert "thought" not in tokenizer.decode(chatml([rec])[0]["input_ids"])
    assert chatml.stats.not_rendered["reasoning"] == 1 and chatml.stats.to_dict()["not_rendered"] == {"reasoning": 1}


@pytest.mark.parametrize("name", [*TEMPLATES, None])
def test_tools_reach_every_template_and_rendering_never_mutates_the_tokenizer(tokenizer, name):
    tok = load_tokenizer("sftkit-tiny")  # its own copy: the state compared below is shared by shallow copies
    before = (tok.padding_side, tok.truncation_side, tok.chat_template, tok.backend_tokenizer.to_str())
    renderer = Renderer(tok, name)
    prompt = renderer.prompt_text(CONVERSATIONS["tool_call"]["messages"][:1], TOOLS)
    assert "get_weather" in prompt and "天气" in prompt
    assert renderer([CONVERSATIONS["tool_call"], CONVERSATIONS["multi_system"]])[0] is not None
    list(renderer.render_many([CONVERSATIONS["single"]]))
    assert (tok.padding_side, tok.truncation_side, tok.chat_template, tok.backend_tokenizer.to_str()) == before
