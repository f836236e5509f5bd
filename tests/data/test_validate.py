"""Validity rules: each rejection names the field and reason; fixes are warnings or explicit repairs."""

from __future__ import annotations

import pytest

from tests.data.helpers import one, reject, run


def conv(*turns):
    return {"conversations": [{"from": f, "value": v} for f, v in turns]}


def test_trailing_user_turn_dropped_with_warning(tmp_path):
    rec, rep = one(tmp_path, conv(("human", "q"), ("gpt", "a"), ("human", "more?")))
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
    assert rep.warnings["trailing_turn_dropped"] == 1


@pytest.mark.parametrize("row,field,reason", [
    (conv(("human", "q")), "messages", "non-blank user turn followed by a non-blank assistant"),
    (conv(("human", "  "), ("gpt", "a")), "messages", "non-blank user turn"),
    (conv(("human", "q"), ("gpt", "")), "messages", "non-blank assistant"),
    (conv(("gpt", "a"), ("human", "q")), "messages", "non-blank user turn followed"),
    (conv(("human", "q"), ("system", "s"), ("gpt", "a")), "messages[1]", "system turn must come first"),
    (conv(("human", "q"), ("narrator", "x"), ("gpt", "a")), "conversations[1].from", "'narrator'"),
    ({"conversations": [{"from": "human", "value": ["a", "list"]}, {"from": "gpt", "value": "a"}]},
     "conversations[0].value", "got a JSON array"),
    ({"instruction": {"a": 1}, "output": "x"}, "instruction", "got a JSON object"),
    ({"instruction": "x"}, "output", "missing"),
    ({"conversations": "not a list"}, "conversations", "expected a list"),
    ({"conversations": [1, 2]}, "conversations[0]", "expected a turn object"),
])
def test_rejections_name_field_and_reason(tmp_path, row, field, reason):
    rej = reject(tmp_path, row)
    assert rej["field"] == field
    assert reason in rej["reason"]
    assert rej["line"] == 1 and rej["index"] == 0 and rej["raw"] == row and rej["source"].endswith("data.jsonl")


def test_numbers_and_booleans_become_text_with_warning(tmp_path):
    rec, rep = one(tmp_path, {"instruction": 12, "output": True})
    assert rec["messages"][0]["content"] == "12" and rec["messages"][1]["content"] == "true"
    assert rep.warnings["number_as_text"] == 2


def test_bare_string_messages_rejected_then_repaired(tmp_path):
    row = {"messages": ["你好", "你好！有什么可以帮你？", "讲个笑话", "好的……"]}
    rej = reject(tmp_path, row)
    assert rej["field"] == "messages" and "bare strings" in rej["reason"] and "--repair alternate-roles" in rej["reason"]
    rec, rep = one(tmp_path, row, repairs=frozenset({"alternate-roles"}))
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user", "assistant"]
    assert rep.repairs["alternate-roles"] == 1


def test_accounting_with_blank_and_broken_lines(tmp_path):
    rows = ['{"instruction": "a", "output": "b"}', "", "   ", "{not json", "[1]", '{"instruction": "c"}',
            '{"instruction": "d", "output": "e"}']
    records, rejects, report = run(tmp_path, rows)
    f = report.files[0]
    assert (f.read, f.converted, f.rejected) == (5, 2, 3)
    assert [r["line"] for r in rejects] == [4, 5, 6]
    assert rejects[0]["raw"] == "{not json"


def _image_row(path, text="<image>What is this?"):
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "A cat."}], "images": [path]}


def test_images_resolve_relative_to_data_file(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"\xff\xd8")
    rec, _ = one(tmp_path, _image_row("img/a.jpg"))
    assert rec["images"] == [str((tmp_path / "img" / "a.jpg").resolve())]


def test_missing_placeholder_added_and_counted(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    rec, rep = one(tmp_path, _image_row("a.jpg", "What is this?"))
    assert rec["messages"][0]["content"] == "<image>What is this?"
    assert rep.warnings["placeholder_added"] == 1


@pytest.mark.parametrize("path,reason", [("../outside.jpg", "escapes the data folder"), ("/etc/passwd", "escapes"),
                                         ("nope.jpg", "file not found")])
def test_bad_image_paths_rejected(tmp_path, path, reason):
    (tmp_path / "outside.jpg").write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    records, rejects, _ = run(sub, [_image_row(path)])
    assert not records and rejects[0]["field"] == "images[0]" and reason in rejects[0]["reason"]


def test_too_many_placeholders_rejected(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    rej = reject(tmp_path, _image_row("a.jpg", "<image><image>two?"))
    assert rej["field"] == "images" and "2 <image> placeholders but 1 images" in rej["reason"]


def test_image_path_with_conversations_and_caption_regions(tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    rec, _ = one(tmp_path, {"image_path": "p.png", "conversations": [{"from": "human", "value": "图里有什么？"},
                                                                     {"from": "gpt", "value": "一只猫"}]})
    assert rec["messages"][0]["content"] == "<image>图里有什么？" and len(rec["images"]) == 1
    rec, _ = one(tmp_path, {"image_path": "p.png", "caption": "A dog on grass.",
                            "region_annotations": [{"bbox": [1, 2, 30, 40], "description": "dog"}]})
    assert rec["messages"][1]["content"] == "A dog on grass."
    assert rec["messages"][3]["content"] == "dog: [1, 2, 30, 40]"
    assert rec["messages"][0]["content"].count("<image>") == 1
    assert rec["meta"]["region_annotations"][0]["description"] == "dog"


def test_file_whose_first_records_are_all_broken(tmp_path):
    rows = ["{broken"] * 60 + ['{"instruction": "a", "output": "b"}', '{"foo": 1}']
    records, rejects, report = run(tmp_path, rows)
    f = report.files[0]
    assert (f.read, f.converted, f.rejected) == (62, 1, 61)
    assert records[0]["messages"][0]["content"] == "a"
    assert "cannot detect the data format" in rejects[-1]["reason"] and rejects[-1]["line"] == 62
