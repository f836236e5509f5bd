"""LLaMA-Factory's v1 data files (data/reason_tool_use_demo_50.jsonl, data/v1_multimodal_demo.jsonl upstream):
tool calls as content parts and media parts that give their path as ``value``."""

from __future__ import annotations

import json

from tests.data.helpers import one, reject

TOOLS = json.dumps([{"name": "get_movie_details", "description": "d",
                     "parameters": {"type": "object", "properties": {"title": {"type": "string"}}}}])


def test_tool_call_parts_become_tool_calls_after_the_reasoning(tmp_path):
    rec, _ = one(tmp_path, {"messages": [
        {"role": "user", "content": [{"type": "text", "value": "Tell me about Inception"}]},
        {"role": "assistant", "content": [
            {"type": "reasoning", "value": "I should look it up."},
            {"type": "tool_call", "value": json.dumps({"name": "get_movie_details", "arguments": {"title": "Inception"}})}]},
        {"role": "tool", "content": [{"type": "text", "value": "{\"year\": 2010}"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "It is from 2010."}]}], "tools": TOOLS})
    call = rec["messages"][1]
    assert call["content"] == "" and call["reasoning_content"] == "I should look it up."
    assert call["tool_calls"] == [{"type": "function", "function": {"name": "get_movie_details",
                                                                    "arguments": '{"title": "Inception"}'}}]
    assert rec["tools"][0]["function"]["name"] == "get_movie_details"


def test_tool_call_parts_are_checked(tmp_path):
    bad = {"messages": [{"role": "user", "content": "q"},
                        {"role": "assistant", "content": [{"type": "tool_call", "value": "{not json"}]}]}
    assert "not valid JSON" in reject(tmp_path, bad)["reason"]
    user_call = {"messages": [{"role": "user", "content": [{"type": "tool_call", "value": "{}"}]},
                              {"role": "assistant", "content": "a"}]}
    assert "only assistant turns make tool calls" in reject(tmp_path, user_call)["reason"]


def test_media_parts_may_give_their_path_as_value(tmp_path):
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "data" / "img" / "1.jpg").write_bytes(b"\xff\xd8")
    row = {"messages": [{"role": "user", "content": [{"type": "image_url", "value": "img/1.jpg"},
                                                     {"type": "text", "value": "Who are they?"}]},
                        {"role": "assistant", "content": [{"type": "text", "value": "Two players."}]}]}
    rec, _ = one(tmp_path / "data", row)
    assert rec["messages"][0]["content"] == "<image>Who are they?"
    assert rec["images"] == [str(tmp_path / "data" / "img" / "1.jpg")]
    # upstream writes paths relative to the repository root: the data root finds them
    row["messages"][0]["content"][0]["value"] = "data/img/1.jpg"
    rec, _ = one(tmp_path / "data", row, data_root=str(tmp_path))
    assert rec["images"] == [str(tmp_path / "data" / "img" / "1.jpg")]
