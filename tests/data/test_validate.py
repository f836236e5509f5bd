"""Validity rules: each rejection names the field and reason; fixes are warnings or explicit repairs."""

from __future__ import annotations

import json

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


# --- records that used to crash or be silently changed (issue 7, defects 7 and 11) ---------------------------------

def test_lone_surrogate_is_rejected_and_written_to_rejects_without_crashing(tmp_path):
    from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths

    rows = ['{"instruction": "a\\ud800b", "output": "x"}', '{"instruction": "ok", "output": "fine"}']
    records, rejects, _ = run(tmp_path, rows)  # the reader or the converted-record check refuses it
    assert len(records) == 1 and rejects[0]["line"] == 1 and "lone surrogate" in rejects[0]["reason"]
    opts = ConvertOptions()
    report = convert_files(sources_from_paths([tmp_path / "data.jsonl"], opts), tmp_path / "out.jsonl", None, opts)
    assert report.total("converted") == 1 and report.total("rejected") == 1
    (line,) = (tmp_path / "out.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    rej = json.loads(line)
    assert rej["line"] == 1 and json.loads(rej["raw"]) == {"instruction": "a\ud800b", "output": "x"}  # kept exactly


def test_converted_records_must_be_valid_unicode(tmp_path):
    """Values no reader yields but a Python caller or another reader may: checked on the converted record."""
    from sftkit.data.formats import FORMATS
    from sftkit.data.pipeline import ConvertOptions, FileReport, Source, convert_item
    from sftkit.data.readers import Item

    def convert(raw):
        return convert_item(Item("mem.jsonl", 1, 0, raw), FORMATS["alpaca"], Source(tmp_path / "mem.jsonl"),
                            ConvertOptions(), str(tmp_path), FileReport("mem"))

    recs, rej = convert({"instruction": "a\ud800b", "output": "x"})
    assert recs is None and rej["field"] == "messages[0].content" and "lone surrogate (U+D800)" in rej["reason"]
    recs, rej = convert({"instruction": "a", "output": "x", "tags": {"k": ["ok", "\udfff"]}})
    assert rej["field"] == "meta.tags.k[1]"
    recs, rej = convert({"instruction": "a", "output": "x", "n": 10**5000})
    assert rej["field"] == "meta.n" and "integer too long" in rej["reason"]
    recs, rej = convert({"instruction": "a", "output": "x", "n": float("nan")})
    assert rej["field"] == "meta.n" and "NaN" in rej["reason"]


def test_nan_and_infinity_are_rejected_never_written(tmp_path):
    from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths

    rows = ['{"instruction": "a", "output": "b", "score": NaN}', '{"instruction": "a", "output": "b", "w": [1, -Infinity]}',
            '{"instruction": "a", "output": "b", "score": 0.5}']
    records, rejects, _ = run(tmp_path, rows)
    assert [r["line"] for r in rejects] == [1, 2] and len(records) == 1  # refused by the reader or the record check
    assert all("NaN" in r["reason"] or "Infinity" in r["reason"] for r in rejects)
    opts = ConvertOptions()
    convert_files(sources_from_paths([tmp_path / "data.jsonl"], opts), tmp_path / "out.jsonl", None, opts)
    def strict(constant):
        raise AssertionError(f"non-standard JSON constant {constant} written")

    for name in ("out.jsonl", "out.rejects.jsonl"):
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line, parse_constant=strict)


def test_a_5000_digit_integer_in_a_text_field_is_a_reject():
    from sftkit.data.formats import FORMATS, Ctx, Options
    from sftkit.errors import RecordError

    for fmt, raw in (("alpaca", {"instruction": 10**5000, "output": "x"}), ("qa", {"question": "q", "answer": -(10**5000)}),
                     ("sharegpt", {"conversations": [{"from": "human", "value": 10**5000}]})):
        with pytest.raises(RecordError, match="number too long"):
            FORMATS[fmt].convert(raw, Ctx(Options()))


def test_deep_nesting_inside_a_json_string_is_a_reject(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    rej = reject(tmp_path, {"conversations": turns, "tools": deep})
    assert rej["field"] == "tools" and "nested too deeply" in rej["reason"]
    rej = reject(tmp_path, {"conversations": [turns[0], {"from": "function_call", "value": deep}, turns[1]]})
    assert rej["field"] == "conversations[1].value" and "nested too deeply" in rej["reason"]
    rej = reject(tmp_path, {"conversations": turns, "tools": '[{"name": "f", "n": ' + "9" * 5000 + "}]"})
    assert rej["field"] == "tools" and "cannot be read" in rej["reason"]


@pytest.mark.parametrize("kind,token", [("images", "<image>"), ("videos", "<video>"), ("audios", "<audio>")])
def test_control_characters_in_media_paths_are_rejected(tmp_path, kind, token):
    (tmp_path / "a.jpg").write_bytes(b"x")
    rej = reject(tmp_path, {"messages": [{"role": "user", "content": token + "q"}, {"role": "assistant", "content": "a"}],
                            kind: ["a.jpg\x00.png"]})
    assert rej["field"] == f"{kind}[0]" and "control character" in rej["reason"]


@pytest.mark.parametrize("token,kind", [("<image>", "images"), ("<video>", "videos"), ("<audio>", "audios")])
def test_placeholders_without_media_are_rejected(tmp_path, token, kind):
    rej = reject(tmp_path, {"conversations": [{"from": "human", "value": f"{token}What is this?"}, {"from": "gpt", "value": "x"}]})
    assert rej["field"] == kind and "no " + kind in rej["reason"] and "literal text" in rej["reason"]
    rej = reject(tmp_path, {"instruction": "q", "output": f"see {token}"})
    assert rej["field"] == "messages[1]" and "outside a user turn" in rej["reason"]


@pytest.mark.parametrize("meta", ["x", ["a", 1], 3])
def test_a_meta_that_is_not_an_object_is_kept(tmp_path, meta):
    rec, rep = one(tmp_path, {"instruction": "q", "output": "a", "meta": meta, "id": 1})
    assert rec["meta"] == {"meta": meta, "id": 1}
    assert rep.warnings["meta_not_object"] == 1


def test_a_top_level_key_does_not_overwrite_meta(tmp_path):
    rec, rep = one(tmp_path, {"instruction": "q", "output": "a", "id": 1, "src": "web", "meta": {"id": 2, "src": "web"}})
    assert rec["meta"] == {"id": 2, "src": "web", "id_top": 1}  # equal values are not a collision
    assert rep.warnings["meta_key_collision"] == 1
    rec, _ = one(tmp_path, {"question": "q", "answer": "x #### 4", "meta": {"final_answer": "5"}})
    assert rec["meta"] == {"final_answer": "5", "final_answer_top": "4"}


def test_non_alternating_turns_are_counted_not_rejected(tmp_path):
    rec, rep = one(tmp_path, conv(("human", "q"), ("human", "more"), ("gpt", "a"), ("gpt", "b")))
    assert len(rec["messages"]) == 4 and rep.warnings["non_alternating"] == 1
    assert rep.warning_examples[0]["field"] == "messages[1]"
    _, rep = one(tmp_path, conv(("human", "q"), ("gpt", "a"), ("human", "q2"), ("gpt", "a2")))
    assert "non_alternating" not in rep.warnings


def test_a_failed_convert_run_leaves_no_tmp_files(tmp_path):
    from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths
    from sftkit.errors import SftkitError
    from tests.conftest import write_jsonl

    good = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a"}, "{broken"])
    bad = write_jsonl(tmp_path / "b.jsonl", [{"foo": 1}])  # undetectable: the run stops with a one-line error
    opts = ConvertOptions()
    with pytest.raises(SftkitError, match="cannot detect"):
        convert_files(sources_from_paths([good, bad], opts), tmp_path / "out" / "train.jsonl", None, opts)
    assert list((tmp_path / "out").iterdir()) == []


def test_prompt_mode_keeps_the_trailing_user_turn(tmp_path):
    rec, rep = one(tmp_path, conv(("human", "q"), ("gpt", "a"), ("human", "next?")), prompts=True)
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant", "user"] and not rep.warnings


@pytest.mark.parametrize("entry,message", [
    ({"file_name": "d.json", "columns": ["prompt", "response"]}, "columns must be an object"),
    ({"file_name": "d.json", "columns": {"prompt": 5}}, "columns.prompt must be text"),
    ({"file_name": "d.json", "tags": 7}, "tags must be an object"),
    ({"file_name": ["d.json"]}, "file_name must be a text path"),
    ({"file_name": "d.json", "formatting": None}, "formatting must be text"),
    ({"file_name": "d.json", "ranking": "yes"}, "ranking must be true or false"),
    ({"file_name": "d.json", "split": 3}, "split must be text"),
    ({"file_name": "d.json", "num_samples": True}, "num_samples must be a positive integer"),
    ({"file_name": "d.json", "split": "train[:" + "9" * 5000 + "]"}, "split"),
])
def test_registry_entries_of_the_wrong_type_are_one_line_errors(tmp_path, entry, message):
    from sftkit.data.pipeline import ConvertOptions
    from sftkit.data.registry import registry_sources
    from sftkit.errors import SftkitError

    (tmp_path / "d.json").write_text('[{"instruction": "q", "output": "a"}]')
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": entry}))
    with pytest.raises(SftkitError) as e:
        registry_sources(tmp_path, ["mine"], ConvertOptions())
    assert "dataset 'mine'" in str(e.value) and message in str(e.value)
