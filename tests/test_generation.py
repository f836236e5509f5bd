"""The one generation function: tools in the prompt, stop strings, tool-call parsing, an untouched tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from sftkit.errors import SftkitError
from sftkit.generation import GenerationOptions, generate, parse_tool_calls, prompt_ids, stream
from sftkit.tokenize.render import Renderer
from sftkit.tokenize.templates import TEMPLATES, format_tool_call

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "What is 2+3?"}]
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好，请介绍一下你自己。"}]
LONG = [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                    "clips in May. How many clips did Natalia sell altogether in April and May?"}]


@pytest.fixture(scope="module")
def base():
    """The shipped base model (a real small LM that writes text), its tokenizer and renderer."""
    from sftkit.infer import Chat

    chat = Chat("sftkit-tiny")
    return chat.model, chat.tokenizer, chat.renderer


def greedy(**kw) -> GenerationOptions:
    return GenerationOptions(**{"max_new_tokens": 24, **kw})


# -- tool calls -----------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["", "Let me check. ", "两个城市：\n"])
def test_tool_call_text_round_trips_to_openai_calls(content):
    calls = [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
             {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": [2, "三"]}}},
             {"type": "function", "function": {"name": "now", "arguments": {}}}]
    text = content + "".join(format_tool_call(c) for c in calls)
    parsed_content, parsed = parse_tool_calls(text)
    assert parsed_content == content
    assert [c["function"]["name"] for c in parsed] == ["get_weather", "add", "now"]
    for want, got in zip(calls, parsed, strict=True):
        args = want["function"]["arguments"]
        assert json.loads(got["function"]["arguments"]) == (json.loads(args) if isinstance(args, str) else args)
        assert got["type"] == "function" and got["id"].startswith("call_")
    assert len({c["id"] for c in parsed}) == 3
    # rendering the parsed message gives back the model's text
    assert parsed_content + "".join(format_tool_call(c) for c in parsed) == text
    msg = {"role": "assistant", "content": parsed_content, "tool_calls": parsed}
    chatml = TEMPLATES["chatml"]
    assert chatml.render([*ASK, msg])[0] == chatml.render(ASK, add_generation_prompt=True)[0] + text + "<|im_end|>\n"


@pytest.mark.parametrize("bad", ['<tool_call>{"name": "f", "arguments": {}</tool_call>',  # broken JSON
                                 '<tool_call>{"arguments": {}}</tool_call>',  # no name
                                 '<tool_call>["f"]</tool_call>', "<tool_call>{}", '<tool_call>{"name": 3}</tool_call>',
                                 '<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>'])  # not an object
def test_malformed_tool_call_text_stays_content(bad):
    good = format_tool_call({"function": {"name": "f", "arguments": {"x": 1}}})
    content, calls = parse_tool_calls("a" + bad + good + "b")
    assert content == "a" + bad + "b" and [c["function"]["name"] for c in calls] == ["f"]


def test_llama3_bare_json_tool_call_parses_back():
    """Llama 3.1 writes a call as the whole reply, ``{"name": ..., "parameters": ...}`` (its official template)."""
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "巴黎"}'}}
    llama3 = TEMPLATES["llama3"]
    head = llama3.render(ASK, TOOLS, add_generation_prompt=True)[0]
    full = llama3.render([*ASK, {"role": "assistant", "content": "", "tool_calls": [call]}], TOOLS)[0]
    reply = full[len(head):].removesuffix("<|eot_id|>")
    content, calls = parse_tool_calls(reply)
    assert content == "" and calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "巴黎"}
    # plain JSON replies that are not Llama's call shape stay text
    for text in ['{"name": "Ann", "age": 3}', '{"name": "f", "parameters": 1}', 'x {"name": "f", "parameters": {}}']:
        assert parse_tool_calls(text) == (text, [])


# -- prompts ----------------------------------------------------------------------------------------
def test_prompts_carry_the_tools_as_the_tokenizer_renders_them(base):
    _, tok, renderer = base
    ids = prompt_ids(renderer, [ASK, ASK], [TOOLS, None])
    official = [tok.apply_chat_template(ASK, tools=t, add_generation_prompt=True)["input_ids"] for t in (TOOLS, None)]
    assert ids == official
    assert '"get_weather"' in tok.decode(ids[0]) and "get_weather" not in tok.decode(ids[1])
    with pytest.raises(SftkitError, match="one per conversation"):
        prompt_ids(renderer, [ASK, ASK], [TOOLS])


# -- stop strings, batching, finish reasons ----------------------------------------------------------
def test_stop_string_cuts_the_reply_and_finishes_with_stop(base):
    model, tok, renderer = base
    free = generate(model, tok, renderer, [ASK, LONG], options=greedy())
    assert [c.finish_reason for c in free] == ["length", "length"] and free[0].completion_tokens == 24
    text = free[0].text
    stop = text[8:12]
    assert text.find(stop) == 8 and stop not in free[1].text  # only the first reply meets it
    cut = generate(model, tok, renderer, [ASK, LONG], options=greedy(stop=["never there", stop]))
    assert cut[0].text == text[:8] and cut[0].finish_reason == "stop"
    assert 0 < cut[0].completion_tokens < free[0].completion_tokens
    assert cut[1].text == free[1].text and cut[1].finish_reason == "length"  # its neighbour in the batch runs on
    # token_ids (what an RL rollout trains on) are the ids kept: all 24, or through the stop string
    assert len(free[0].token_ids) == 24 and tok.decode(free[0].token_ids, skip_special_tokens=True) == text
    assert len(cut[0].token_ids) == cut[0].completion_tokens and free[0].token_ids[:len(cut[0].token_ids)] == cut[0].token_ids
    assert stop in tok.decode(cut[0].token_ids) and stop not in tok.decode(cut[0].token_ids[:-1])
    # streaming: the same reply, and no piece ever shows text of the stop string
    s = stream(model, tok, renderer, ASK, options=greedy(stop=[stop]))
    pieces = list(s)
    assert "".join(pieces) == text[:8] and s.completion.finish_reason == "stop"


def test_batched_left_padded_replies_equal_one_at_a_time(base):
    model, tok, renderer = base
    batch = generate(model, tok, renderer, [ASK, HELLO, LONG], options=greedy(max_new_tokens=12, batch_size=3))
    alone = [generate(model, tok, renderer, [c], options=greedy(max_new_tokens=12))[0] for c in (ASK, HELLO, LONG)]
    assert [c.text for c in batch] == [c.text for c in alone]
    assert [c.prompt_tokens for c in batch] == [len(tok.apply_chat_template(c, add_generation_prompt=True)["input_ids"])
                                                for c in (ASK, HELLO, LONG)]


def test_end_of_turn_finishes_with_stop(base):
    """A reply ends at the end-of-turn token: forced here by a large logit bias on <|im_end|>."""
    model, tok, renderer = base
    bias = torch.zeros(len(tok))
    bias[tok.convert_tokens_to_ids("<|im_end|>")] = 1e4
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: o + bias)
    try:
        done = generate(model, tok, renderer, [ASK], options=greedy())[0]
    finally:
        hook.remove()
    assert (done.text, done.finish_reason, done.completion_tokens) == ("", "stop", 1)
    assert done.token_ids == [tok.convert_tokens_to_ids("<|im_end|>")]  # the end of turn is kept: it is learned


def test_sampling_is_seeded_without_moving_the_global_rng(base):
    model, tok, renderer = base
    opts = greedy(temperature=1.0, top_p=0.9, top_k=50, seed=7, n=3, batch_size=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate(model, tok, renderer, [ASK, HELLO], options=opts)
    assert torch.equal(torch.get_rng_state(), state)
    b = generate(model, tok, renderer, [ASK, HELLO], options=opts)
    assert len(a) == 6 and [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a[:3]}) > 1  # three different samples of the first conversation
    assert [c.prompt_tokens for c in a[:3]] != [c.prompt_tokens for c in a[3:]]  # conversation-major order


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": 0}, {"n": 0},
                                 {"stop": [""]}])
def test_bad_options_are_user_errors(bad):
    with pytest.raises(SftkitError):
        GenerationOptions(**bad)


# -- the tokenizer is only read -----------------------------------------------------------------------
def _state(tok, tmp_path, name) -> dict:
    out = tmp_path / name
    tok.save_pretrained(out)
    backend = tok.backend_tokenizer
    return {"padding_side": tok.padding_side, "truncation_side": tok.truncation_side,
            "chat_template": tok.chat_template, "special": tok.special_tokens_map, "pad": tok.pad_token_id,
            "backend_padding": backend.padding, "backend_truncation": backend.truncation,
            "files": {p.name: p.read_bytes() for p in sorted(out.iterdir())}}


def test_generation_never_changes_the_tokenizer(base, tmp_path):
    from sftkit.models import load_tokenizer

    model, tok, renderer = base
    records = [{"messages": [*c, {"role": "assistant", "content": "Sure: 5."}], "tools": t}
               for c, t in ((ASK, TOOLS), (HELLO, None), (LONG, None))]
    rows = Renderer(tok)(records)
    before = _state(tok, tmp_path, "before")
    assert before == {**_state(load_tokenizer("sftkit-tiny"), tmp_path, "fresh"), "files": before["files"]}
    assert before["padding_side"] == "right" and before["backend_padding"] is None
    generate(model, tok, renderer, [ASK, HELLO, LONG], [TOOLS, None, None], greedy(stop=["。", "\n"], batch_size=3))
    list(stream(model, tok, renderer, HELLO, options=greedy(stop=["。"])))
    assert _state(tok, tmp_path, "after") == before
    assert Renderer(tok)(records) == rows


def test_a_packed_model_generates_with_padding_and_stays_packed(base, tmp_path):
    from sftkit.models import load_model
    from sftkit.tokenize.packing import ATTENTION

    _, tok, renderer = base
    packed = load_model("sftkit-tiny", precision="fp32")
    packed.set_attn_implementation(ATTENTION)
    packed.train()
    done = generate(packed, tok, renderer, [ASK, LONG], options=greedy(max_new_tokens=10))
    assert packed.config._attn_implementation == ATTENTION and packed.training
    plain = load_model("sftkit-tiny", precision="fp32").eval()
    assert [c.text for c in done] == [c.text for c in generate(plain, tok, renderer, [ASK, LONG],
                                                                options=greedy(max_new_tokens=10))]


def test_a_run_with_generation_eval_saves_the_tokenizer_it_loaded(tiny_model_dir, tmp_path):
    """Generation-eval every step, packed: the saved tokenizer has no padding state and renders as before."""
    import yaml

    from sftkit.models import load_tokenizer
    from sftkit.train.sft import train
    from tests.conftest import GSM8K
    from tests.train.helpers import config

    cfg = config(tiny_model_dir, tmp_path / "run", "lora", max_steps=2, logging_steps=1)
    cfg.data.packing = True
    cfg.eval.data, cfg.eval.every_steps = str(GSM8K / "test.jsonl"), 1
    cfg.eval.max_samples, cfg.eval.max_new_tokens, cfg.eval.batch_size = 3, 4, 3
    run = train(cfg)
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum("eval_gen_bleu" in m for m in logs) == 2
    final = run / "final"
    assert json.loads((final / "tokenizer.json").read_text())["padding"] is None
    assert yaml.safe_load((final / "tokenizer_config.json").read_text()).get("padding_side", "right") == "right"
    saved, original = load_tokenizer(str(final)), load_tokenizer(str(tiny_model_dir))
    assert saved.padding_side == "right"
    records = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]},
               {"messages": [*LONG, {"role": "assistant", "content": "72"}]}]
    # the run's saved tokenizer.json, read by the Rust tokenizer itself, encodes like the original one
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(final / "tokenizer.json"))
    texts = [Renderer(original).render_text(r)[0] for r in records]
    assert [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)] == \
        [original(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert Renderer(saved)(records) == Renderer(original)(records)


def test_a_tokenizer_saved_with_padding_switched_on_loads_clean(tmp_path):
    """Runs saved by the old generation-eval carry backend padding in tokenizer.json; loading repairs that."""
    from sftkit.models import load_tokenizer

    tok = load_tokenizer("sftkit-tiny")
    clean = tok("a b c", add_special_tokens=False)["input_ids"]
    tok.padding_side = "left"
    tok(["a", "a much longer text"], padding=True)
    tok.save_pretrained(tmp_path / "padded")
    assert json.loads((tmp_path / "padded" / "tokenizer.json").read_text())["padding"] is not None
    loaded = load_tokenizer(str(tmp_path / "padded"))
    assert loaded.padding_side == "right" and loaded.backend_tokenizer.padding is None
    assert [e.ids for e in loaded.backend_tokenizer.encode_batch(["a b c", "a much longer text"],
                                                                 add_special_tokens=False)][0] == clean


def test_content_before_a_qwen_tool_call_re_renders_the_generated_text():
    """Qwen writes ``content\n<tool_call>\n...``: the parsed content drops the separator the template adds back."""
    from sftkit.generation import Completion, _fit_content
    from sftkit.tokenize.templates import get_template

    class _Tok:
        eos_token = "<|im_end|>"
        chat_template = None
        backend_tokenizer = None

    renderer = Renderer(_Tok(), get_template("qwen"))
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    full = renderer.render_text({"messages": [*ASK, {"role": "assistant", "content": "Let me check.",
                                                     "tool_calls": [call]}], "tools": TOOLS})[0]
    head = renderer.prompt_text(ASK, TOOLS)
    text = full[len(head):].split("<|im_end|>")[0]
    content, calls = parse_tool_calls(text)
    c = Completion(text, content, calls, "tool_calls", 0, 0)
    _fit_content(renderer, ASK, TOOLS, c)
    assert c.content == "Let me check."
    again = renderer.render_text({"messages": [*ASK, c.message()], "tools": TOOLS})[0]
    assert again.startswith(head + text)
