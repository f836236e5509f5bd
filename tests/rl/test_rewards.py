"""The rewards registry: answer match (eval's extraction and numeric compare), format, length, difficulty
bonus, and loading user functions from ``module:function`` with one-line errors."""

from __future__ import annotations

import math

import pytest

from sftkit.config_rl import RewardSpec
from sftkit.errors import SftkitError
from sftkit.rewards import REWARDS, final_answer, is_correct, load_reward, load_rewards, split_prompt


def rec(final=None, reply=None, prompt="How many?", **meta) -> dict:
    """A canonical record: one user turn, an optional demonstration reply, meta.final_answer when given."""
    msgs = [{"role": "user", "content": prompt}]
    if reply is not None:
        msgs.append({"role": "assistant", "content": reply})
    if final is not None:
        meta["final_answer"] = final
    return {"messages": msgs, "meta": meta, "origin": {"file": "q.jsonl", "line": 3, "index": 2}}


def answer_match(completion: str, record: dict, **options) -> float:
    return load_reward(RewardSpec(name="answer_match", options=options))([completion], [record])[0]


ANSWERS = [  # (completion, final answer, reward)
    ("48 / 2 = 24, 48 + 24 = 72\n#### 72", "72", 1.0),
    ("一共 72 个。\n答案：72", "72", 1.0),
    ("所以答案是 72。", "72", 1.0),
    ("The answer is 72.", "72", 1.0),
    ("72.0", "72", 1.0),
    ("She sold $72 in total.", "72", 1.0),
    ("1,000", "1000", 1.0),
    ("The answer is 1,000 dollars.", "1000", 1.0),
    ("答案：0.75", "3/4", 1.0),
    ("#### 71", "72", 0.0),
    ("答案是 73。", "72", 0.0),
    ("The answer is 7.2", "72", 0.0),
    ("I do not know.", "72", 0.0),
    ("", "72", 0.0),
    ("我不知道。", "72", 0.0),
    ("Option B fits. The answer is (B).", "B", 1.0),
    ("(B)", "B", 1.0),
    ("B.", "(B)", 1.0),
    ("答案：C", "B", 0.0),
    ("答案：是", "是", 1.0),
    ("是", "是", 1.0),
    ("答案：否", "是", 0.0),
    ("答案：不是", "否", 1.0),
    ("答案：对", "是", 1.0),
    ("No.", "否", 1.0),
    ("The answer is yes.", "Yes", 1.0),
    ("The answer is no.", "yes", 0.0),
    ("The answer is True.", "true", 1.0),
    ("false", "True", 0.0),
    ("The answer is Paris.", "paris", 1.0),
]


@pytest.mark.parametrize("completion,final,reward", ANSWERS)
def test_answer_match_table(completion, final, reward):
    assert answer_match(completion, rec(final)) == reward
    assert is_correct(completion, rec(final)) is (reward == 1.0)


@pytest.mark.parametrize(
    "reply,meta_final,final",
    [
        ("She sold 24 clips.\n#### 72", None, "72"),  # GSM8K demonstration
        ("所以一共 15 个。答案：15", None, "15"),
        ("Thinking... 3 + 4 = 7 apples.", None, None),  # a bare last number is no verified answer
        ("#### 9", "10", "10"),  # meta.final_answer wins over the reply
        (None, 5, "5"),  # prompt-only record with meta
        (None, None, None),
    ],
)
def test_final_answer(reply, meta_final, final):
    assert final_answer(rec(meta_final, reply)) == final


def test_record_without_final_answer_scores_zero():
    r = rec(None, "Here are 3 tips.")
    assert final_answer(r) is None and not is_correct("3", r) and answer_match("3", r) == 0.0


def test_split_prompt():
    system = {"role": "system", "content": "Be brief."}
    convo = {
        "messages": [
            system,
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "#### 4"},
        ]
    }
    prompt, demo = split_prompt(convo)
    assert prompt == convo["messages"][:4] and demo == convo["messages"][4]
    assert split_prompt({"messages": convo["messages"][:4]}) == (convo["messages"][:4], None)
    pref = {
        "messages": convo["messages"][:4],
        "chosen": {"role": "assistant", "content": "4"},
        "rejected": {"role": "assistant", "content": "5"},
    }
    assert split_prompt(pref) == (convo["messages"][:4], pref["chosen"])
    assert split_prompt({**convo, "label": False})[1] is None  # an undesirable KTO reply is no demonstration
    with pytest.raises(SftkitError, match="q.jsonl:1: no user turn"):
        split_prompt({"messages": [system], "origin": {"file": "q.jsonl", "line": 1, "index": 0}})


@pytest.mark.parametrize(
    "options,ok",
    [
        ({}, 1.0),  # no bonus: every correct answer is worth 1
        ({"difficulty_bonus": 0.5}, 1.0 + 0.5 * 0.6),  # meta.difficulty 0.6 already in [0, 1]
    ],
)
def test_difficulty_bonus_in_unit_range(options, ok):
    assert answer_match("#### 72", rec("72", difficulty=0.6), **options) == pytest.approx(ok)
    assert answer_match("#### 70", rec("72", difficulty=0.6), **options) == 0.0  # wrong earns nothing


def test_difficulty_bonus_scaled_and_levels():
    assert answer_match(
        "#### 72", rec("72", level=4), difficulty_field="level", difficulty_bonus=1.0, difficulty_max=5
    ) == pytest.approx(1.8)
    levels = ["easy", "medium", "hard"]
    got = [
        answer_match("#### 1", rec("1", difficulty=lv), difficulty_bonus=1.0, difficulty_levels=levels)
        for lv in levels
    ]
    assert got == [1.0, 1.5, 2.0]
    assert answer_match("#### 1", rec("1"), difficulty_bonus=1.0) == 1.0  # no difficulty: no bonus
    with pytest.raises(
        SftkitError, match=r"q.jsonl:3: meta.difficulty = 4 is outside \[0, 1\].*difficulty_max"
    ):
        answer_match("#### 1", rec("1", difficulty=4), difficulty_bonus=1.0)
    with pytest.raises(SftkitError, match="'extreme' is not one of difficulty_levels"):
        answer_match("#### 1", rec("1", difficulty="extreme"), difficulty_bonus=1.0, difficulty_levels=levels)


FORMATS = [  # (options, completion, reward)
    ({"style": "gsm8k"}, "48 / 2 = 24\n#### 72", 1.0),
    ({"style": "gsm8k"}, "#### 1,000\n", 1.0),
    ({"style": "gsm8k"}, "#### 72\nHope this helps!", 0.0),  # not the final line
    ({"style": "gsm8k"}, "The answer is 72.", 0.0),
    ({"style": "gsm8k"}, "#### seventy-two", 0.0),
    ({"style": "zh"}, "一共 72 个。\n答案：72", 1.0),
    ({"style": "zh"}, "所以答案是 72。", 1.0),
    ({"style": "zh"}, "最终答案为：B", 1.0),
    ({"style": "zh"}, "答案：", 0.0),
    ({"style": "zh"}, "一共 72 个。", 0.0),
    ({"style": "tags"}, "<think>3 + 4 = 7</think> 7", 1.0),
    ({"style": "tags"}, "<think>3 + 4 = 7</think>", 0.0),  # no answer after the pair
    ({"style": "tags"}, "</think>7<think>", 0.0),  # out of order
    ({"style": "tags"}, "<think>3 + 4 = 7 7", 0.0),
    ({"style": "tags", "open": "<answer>", "close": "</answer>"}, "<answer>7</answer> done", 1.0),
    ({"pattern": r"^Step 1:.*#### \d+$"}, "Step 1: add\n#### 7", 1.0),
    ({"pattern": r"#### \d+"}, "so #### 7 then more", 1.0),
    ({"pattern": r"#### \d+", "match": "fullmatch"}, "so #### 7 then more", 0.0),
    ({"pattern": r"#### \d+", "match": "fullmatch"}, "#### 7", 1.0),
]


@pytest.mark.parametrize("options,completion,reward", FORMATS)
def test_format_table(options, completion, reward):
    fn = load_reward(RewardSpec(name="format", options=options))
    assert fn([completion], [rec("7")]) == [reward]


@pytest.mark.parametrize(
    "length,reward", [(0, 0.0), (400, 0.0), (401, -1 / 400), (600, -0.5), (800, -1.0), (5000, -1.0)]
)
def test_length_penalty(length, reward):
    fn = load_reward(RewardSpec(name="length"))
    assert fn(["x" * length], [rec()]) == [pytest.approx(reward)]
    small = load_reward(RewardSpec(name="length", options={"max_chars": 10}))
    assert small(["答" * 15], [rec()]) == [pytest.approx(-0.5)]  # characters, not bytes


def test_load_rewards_keeps_names_and_weights():
    loaded = load_rewards(
        [RewardSpec(name="answer_match"), RewardSpec(name="format", weight=0.2, options={"style": "gsm8k"})]
    )
    assert [(n, w) for n, w, _ in loaded] == [("answer_match", 1.0), ("format", 0.2)]
    fns = [fn for _, _, fn in loaded]
    assert [f(["#### 72", "72"], [rec("72"), rec("72")]) for f in fns] == [[1.0, 1.0], [1.0, 0.0]]
    assert fns[1].__name__ == "format" and set(REWARDS) >= {"answer_match", "format", "length"}
    assert all(r.doc and r.fn.__doc__ for r in REWARDS.values())


USER_MODULE = '''
import math

def short(completions, records, limit=5):
    """1 for a reply of at most `limit` characters."""
    return [1.0 if len(c) <= limit else 0.0 for c in completions]

def anything(completions, records, **kw):
    return [float(kw.get("value", 0))] * len(completions)

def nan(completions, records):
    return [math.nan for _ in completions]

def too_few(completions, records):
    return [1.0]

def words(completions, records):
    return ["good" for _ in completions]

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    (tmp_path / "broken_rewards.py").write_text("import not_installed_anywhere_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards"


def test_user_function_from_module(user_module):
    short = load_reward(RewardSpec(name="my_rewards:short", options={"limit": 3}))
    assert short(["abc", "abcd"], [rec(), rec()]) == [1.0, 0.0]
    assert short.__name__ == "my_rewards:short"
    # a function with **kw takes any option
    anything = load_reward(RewardSpec(name="my_rewards:anything", options={"value": 2}))
    assert anything(["a"], [rec()]) == [2.0]


@pytest.mark.parametrize(
    "name,options,message",
    [
        (
            "answer_macth",
            {},
            r"rl.rewards\[1\].name: unknown reward 'answer_macth' \(did you mean 'answer_match'\?\)",
        ),
        (
            "broken_rewards:f",
            {},
            r"rl.rewards\[1\].name: 'broken_rewards:f': module 'broken_rewards' does not import "
            r"\(ModuleNotFoundError: No module named 'not_installed_anywhere_xyz'\)",
        ),
        ("no_such_module_xyz:f", {}, r"module 'no_such_module_xyz' does not import"),
        (
            "my_rewards:missing",
            {},
            r"rl.rewards\[1\].name: 'my_rewards:missing': module 'my_rewards' has no attribute "
            r"'missing'",
        ),
        ("my_rewards:NOT_A_FUNCTION", {}, r"'NOT_A_FUNCTION' is a int, not a function"),
        (":f", {}, r"is not package.module:function"),
        (
            "my_rewards:short",
            {"limt": 3},
            r"rl.rewards\[1\].options: reward 'my_rewards:short' has no option 'limt' "
            r"\(did you mean 'limit'\?\); its options: limit",
        ),
        ("format", {"stlye": "gsm8k"}, r"has no option 'stlye' \(did you mean 'style'\?\)"),
        ("format", {"style": "latex"}, r"rl.rewards\[1\].options: format: unknown style 'latex'"),
        ("format", {"pattern": "(unclosed"}, r"not a valid regex"),
        ("format", {}, r"give exactly one of style"),
        ("length", {"max_chars": 0}, r"max_chars must be a positive whole number"),
    ],
)
def test_load_errors_are_one_line_and_name_the_key(user_module, name, options, message):
    with pytest.raises(SftkitError, match=message) as e:
        load_reward(RewardSpec(name=name, options=options), "rl.rewards[1]")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name,message",
    [
        ("my_rewards:nan", r"reward 'my_rewards:nan' returned nan for completion 0 \(not a finite number\)"),
        ("my_rewards:too_few", r"returned 1 values for 2 completions"),
        ("my_rewards:words", r"returned 'good' for completion 0"),
    ],
)
def test_bad_reward_values_name_the_reward(user_module, name, message):
    fn = load_reward(RewardSpec(name=name))
    with pytest.raises(SftkitError, match=message):
        fn(["a", "b"], [rec(), rec()])


def test_rewards_are_finite_floats():
    fn = load_reward(RewardSpec(name="answer_match", options={"difficulty_bonus": 0.5}))
    values = fn(["#### 1", "nothing"], [rec("1", difficulty=1.0), rec("1")])
    assert values == [1.5, 0.0] and all(isinstance(v, float) and math.isfinite(v) for v in values)
