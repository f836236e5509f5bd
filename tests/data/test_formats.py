"""Every source format converts to the canonical schema, detected from its keys."""

from __future__ import annotations

import json

import pytest

from sftkit.data.formats import detect_format
from tests.data.helpers import one, reject


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_alpaca_prompt_rule_history_and_system(tmp_path):
    rec, rep = one(tmp_path, {"instruction": "翻译", "input": "hello", "output": "你好", "system": "你是翻译",
                              "history": [["hi", "嗨"]], "id": 7})
    assert rep.format == "alpaca"
    assert rec["messages"] == msgs(("system", "你是翻译"), ("user", "hi"), ("assistant", "嗨"),
                                   ("user", "翻译\nhello"), ("assistant", "你好"))
    assert rec["meta"] == {"id": 7}


def test_alpaca_empty_input_is_not_joined(tmp_path):
    rec, _ = one(tmp_path, {"instruction": "Say hi", "input": "", "output": "hi"})
    assert rec["messages"][0]["content"] == "Say hi"


def test_qa_context_and_gsm8k_final_answer(tmp_path):
    rec, rep = one(tmp_path, {"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4", "context": "Two pairs."})
    assert rep.format == "qa"
    assert rec["messages"][0]["content"] == "Two pairs.\n\nHow many?"
    assert rec["meta"]["final_answer"] == "4"


def test_prompt_completion_whitespace_is_byte_exact(tmp_path):
    code = "def f(x):\n\tif x:\n        return  x  \n\n"
    rec, rep = one(tmp_path, {"prompt": "  # complete\n", "completion": code})
    assert rep.format == "prompt_completion"
    assert rec["messages"][0]["content"] == "  # complete\n"
    assert rec["messages"][1]["content"] == code


def test_sharegpt_roles_system_and_turn_extras(tmp_path):
    rec, rep = one(tmp_path, {"conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "q1", "domain": "math"},
        {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]})
    assert rep.format == "sharegpt"
    assert rec["messages"] == msgs(("system", "sys"), ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"))
    assert rec["meta"]["turns"] == [{"turn": 1, "domain": "math"}]


def test_sharegpt_with_role_content(tmp_path):
    rec, _ = one(tmp_path, {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    assert rec["messages"] == msgs(("user", "q"), ("assistant", "a"))


def test_xtuner_pairs(tmp_path):
    rec, rep = one(tmp_path, {"conversation": [{"system": "s", "input": "q1", "output": "a1"}, {"input": "q2", "output": "a2"}]})
    assert rep.format == "xtuner"
    assert rec["messages"] == msgs(("system", "s"), ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"))


def test_xtuner_system_after_first_pair_is_rejected(tmp_path):
    rej = reject(tmp_path, {"conversation": [{"input": "q1", "output": "a1"}, {"system": "s", "input": "q2", "output": "a2"}]})
    assert rej["field"] == "conversation[1].system" and "first" in rej["reason"]


def test_openai_messages_roleplay(tmp_path):
    rec, rep = one(tmp_path, {"messages": msgs(("system", "你是李白。"), ("user", "作首诗"), ("assistant", "床前明月光"))})
    assert rep.format == "openai"
    assert rec["messages"][0] == {"role": "system", "content": "你是李白。"}


def test_dialog_speakers_timestamps_actions(tmp_path):
    rec, rep = one(tmp_path, {"dialog_id": "d1", "scenario": "退货", "turns": [
        {"speaker": "顾客", "utterance": "我要退货", "timestamp": "10:00"},
        {"speaker": "客服", "utterance": "好的，请提供订单号", "timestamp": "10:01", "actions": ["lookup"]},
        {"speaker": "顾客", "utterance": "123", "timestamp": "10:02"},
        {"speaker": "客服", "utterance": "已办理", "timestamp": "10:03"}]})
    assert rep.format == "dialog"
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user", "assistant"]
    assert rec["meta"]["dialog_id"] == "d1" and rec["meta"]["scenario"] == "退货"
    assert rec["meta"]["turns"][1] == {"turn": 1, "speaker": "客服", "timestamp": "10:01", "actions": ["lookup"]}


def test_dialog_explicit_speaker_map_and_third_speaker(tmp_path):
    row = {"dialog_id": "d", "turns": [{"speaker": "agent", "utterance": "hello"}, {"speaker": "cust", "utterance": "hi"},
                                       {"speaker": "agent", "utterance": "how can I help"}]}
    rec, _ = one(tmp_path, row, speaker_map={"cust": "user", "agent": "assistant"})
    assert [m["role"] for m in rec["messages"]] == ["assistant", "user", "assistant"]
    row3 = {"dialog_id": "d", "turns": [{"speaker": "a", "utterance": "x"}, {"speaker": "b", "utterance": "y"},
                                        {"speaker": "c", "utterance": "z"}]}
    rej = reject(tmp_path, row3)
    assert rej["field"] == "turns[2].speaker" and "'c'" in rej["reason"]


def test_legal(tmp_path):
    rec, rep = one(tmp_path, {"case_id": "C-1", "legal_issue": "合同是否有效", "facts": "双方签订合同。",
                              "judgment": "合同有效。", "citations": ["《民法典》第143条"]})
    assert rep.format == "legal"
    assert "合同是否有效" in rec["messages"][0]["content"] and "双方签订合同。" in rec["messages"][0]["content"]
    assert rec["messages"][1]["content"] == "合同有效。"
    assert rec["meta"] == {"case_id": "C-1", "citations": ["《民法典》第143条"]}


def test_cot_steps_in_order_then_answer(tmp_path):
    rec, rep = one(tmp_path, {"problem": "1+2*3?", "reasoning_steps": ["2*3=6", {"step": 2, "content": "1+6=7"}],
                              "final_answer": 7})
    assert rep.format == "cot"
    assert rec["messages"][1]["content"] == "2*3=6\n1+6=7\n#### 7"
    assert rec["meta"]["final_answer"] == "7"
    assert rep.warnings["number_as_text"] == 1


def test_multitask(tmp_path):
    rec, rep = one(tmp_path, {"task_type": "translation", "source_lang": "zh", "target_lang": "en",
                              "source_text": "你好", "target_text": "Hello"})
    assert rep.format == "multitask"
    assert rec["messages"][0]["content"] == "Translate the following Chinese text into English.\n\n你好"
    assert rec["messages"][1]["content"] == "Hello"
    assert rec["meta"]["task_type"] == "translation"


def test_document_chunks_become_text_records(tmp_path):
    from tests.data.helpers import run

    records, rejects, report = run(tmp_path, [{"doc_id": "D", "title": "T", "chunks": [
        {"text": "part one", "start_pos": 0, "end_pos": 8}, {"text": "part two", "start_pos": 8, "end_pos": 16}]},
        {"text": "plain"}])
    assert not rejects
    assert report.files[0].read == 2 and report.files[0].converted == 2 and report.files[0].records_out == 3
    where = str(tmp_path / "data.jsonl")
    assert records[0] == {"text": "part one", "meta": {"doc_id": "D", "title": "T", "chunk": 0, "start_pos": 0, "end_pos": 8},
                          "origin": {"file": where, "line": 1, "index": 0}}
    assert records[1]["origin"] == records[0]["origin"]  # one item's records share its origin
    assert records[2] == {"text": "plain", "meta": {}, "origin": {"file": where, "line": 2, "index": 1}}


def test_preference_lf_sharegpt_and_trl_shapes(tmp_path):
    rec, _ = one(tmp_path, {"conversations": [{"from": "human", "value": "q"}],
                            "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}})
    assert rec["messages"] == msgs(("user", "q")) and rec["chosen"]["content"] == "good" and rec["rejected"]["content"] == "bad"
    rec, _ = one(tmp_path, {"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert rec["chosen"] == {"role": "assistant", "content": "good"}


def test_kto_label(tmp_path):
    rec, _ = one(tmp_path, {"messages": msgs(("user", "q"), ("assistant", "a")), "label": False})
    assert rec["label"] is False
    rec, _ = one(tmp_path, {"messages": msgs(("user", "q"), ("assistant", "a")), "label": "positive"})
    assert "label" not in rec and rec["meta"]["label"] == "positive"  # a non-boolean label is metadata


def test_tool_calling_glaive_shape(tmp_path):
    tools = json.dumps([{"name": "get_weather", "description": "天气", "parameters": {"type": "object"}}])
    rec, _ = one(tmp_path, {"conversations": [
        {"from": "human", "value": "北京天气？"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "北京"}})},
        {"from": "observation", "value": "{\"temp\": 20}"},
        {"from": "gpt", "value": "20度"}], "tools": tools})
    call = rec["messages"][1]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"city": "北京"}
    assert rec["messages"][2] == {"role": "tool", "content": "{\"temp\": 20}"}
    assert rec["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                                              "parameters": {"type": "object"}}}]


def test_bad_function_call_json_is_rejected(tmp_path):
    rej = reject(tmp_path, {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{oops"},
                                              {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]})
    assert rej["field"] == "conversations[1].value" and "not valid JSON" in rej["reason"]


@pytest.mark.parametrize("row,name", [
    ({"instruction": "a", "output": "b"}, "alpaca"), ({"question": "a", "answer": "b"}, "qa"),
    ({"prompt": "a", "completion": "b"}, "prompt_completion"), ({"conversations": []}, "sharegpt"),
    ({"conversation": []}, "xtuner"), ({"messages": []}, "openai"), ({"dialog_id": 1, "turns": []}, "dialog"),
    ({"image_path": "x.jpg", "caption": "c"}, "image_caption"), ({"case_id": 1, "legal_issue": "i", "judgment": "j"}, "legal"),
    ({"problem": "p", "reasoning_steps": [], "final_answer": 1}, "cot"),
    ({"task_type": "t", "source_text": "s", "target_text": "t"}, "multitask"), ({"doc_id": 1, "chunks": []}, "document"),
    ({"text": "t"}, "text"), ({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference"),
])
def test_detection(row, name):
    assert detect_format(row) == name


def test_user_column_mapping(tmp_path):
    rec, rep = one(tmp_path, {"query": "问题", "response": "回答"}, mapping={"question": "query", "answer": "response"})
    assert rep.format == "qa" and rec["messages"] == msgs(("user", "问题"), ("assistant", "回答"))


def test_formats_command_lists_the_canonical_format(capsys):
    from sftkit.cli import main

    assert main(["data", "formats"]) == 0
    out = capsys.readouterr().out
    assert "canonical" in out and "fixed point" in out
    assert out.index("canonical") < out.index("openai")  # tried before plain OpenAI files when detecting
