"""Quality report: noise flags, duplicates (Chinese too), lengths and language mix."""

from __future__ import annotations

from sftkit.data.quality import entropy, language, quality_report, repeated_ngram_ratio


def conv(prompt, reply):
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
            "images": [], "tools": [], "meta": {}}


def report(pairs):
    return quality_report((conv(p, r), f"f:{i + 1}") for i, (p, r) in enumerate(pairs))


def test_noise_flags_on_known_junk():
    q = report([("笑一个", "哈哈哈哈哈"), ("hi", "xkqz vbwp lmnt rrqz kkdf ghjk lzxc vbnm qwrt"), ("复述：你好", "复述：你好"),
                ("说点什么", ""), ("问", "好"), ("code", "#$%^&*@!~#$%^&*@!~#$%^&*@!~"),
                ("写一段话", "今天天气很好，我们一起去公园散步，看到了很多美丽的花。")])
    c = q["noise"]["counts"]
    assert c["low_entropy"] >= 1 and q["noise"]["examples"]["low_entropy"][0]["where"] == "f:1"
    assert c["garbage"] == 2
    assert c["reply_equals_prompt"] == 1 and c["empty_reply"] == 1 and c["short_reply"] == 1
    flagged = {ex["where"] for exs in q["noise"]["examples"].values() for ex in exs}
    assert "f:7" not in flagged  # a normal sentence is not noise


def test_entropy_and_repetition_measures():
    assert entropy("哈哈哈哈哈") == 0.0
    assert abs(entropy("abcd") - 2.0) < 1e-9
    assert repeated_ngram_ratio("好的好的好的好的好的好的") > 0.5
    assert repeated_ngram_ratio("The quick brown fox jumps over the lazy dog") < 0.1


def test_exact_and_near_duplicates_in_chinese():
    base = "今天天气很好，我们去公园散步吧，顺便买点新鲜的水果和蔬菜回家做饭。"
    q = report([("问题一", base), ("问题一", base), ("问题一", base.replace("买点", "买些")), ("完全不同", "这是另外一句话，内容毫无关系。")])
    assert q["duplicates"]["exact"] == 1
    assert q["duplicates"]["near"] == 1
    assert q["duplicates"]["examples"]["near"][0] == {"where": "f:3", "duplicate_of": "f:1",
                                                      "text": "问题一 | " + base.replace("买点", "买些")}


def test_lengths_turns_and_languages():
    q = report([("abc", "defg"), ("你好", "你好呀"), ("¿Qué?", "Sí")])
    assert q["chars"]["reply"]["max"] == 4 and q["chars"]["prompt"]["min"] == 2
    assert q["turns_per_conversation"]["median"] == 1
    assert language("这是中文 with some English") == "zh"
    assert language("plain English text") == "en"
    assert language("これは日本語です") == "other"
    assert set(q["languages"]) == {"en", "zh"}


def test_token_lengths_with_a_tokenizer():
    q = quality_report([(conv("a b", "c d e"), "x:1")], tokenizer=lambda texts: [t.split() for t in texts])
    assert q["tokens"]["prompt"]["max"] == 2 and q["tokens"]["reply"]["max"] == 3
