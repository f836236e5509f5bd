"""The CLI: exit codes, one-line errors, reports, outputs and rejects files."""

from __future__ import annotations

import json

import pytest

from sftkit.cli import main
from tests.conftest import LF, write_jsonl


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mixed(tmp_path):
    return write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "a", "output": "b"}, "{oops", {"instruction": "c"}, {"instruction": "d", "output": 5}])


def test_check_reports_accounting_and_first_errors(capsys, mixed):
    code, out, _ = run_cli(capsys, "data", "check", mixed)
    assert code == 0
    assert "format: alpaca (detected)" in out
    assert "records read 4 = valid 2 + invalid 2" in out
    assert "validation rate 50.0%" in out
    assert "number_as_text 1" in out
    assert "line 2 (index 1)" in out and "malformed JSON" in out
    assert "line 3 (index 2) field 'output': missing field" in out


def test_check_json_and_strict(capsys, mixed):
    code, out, _ = run_cli(capsys, "data", "check", mixed, "--json", "--strict")
    assert code == 1
    report = json.loads(out)
    assert report["read"] == 4 and report["valid"] == 2 and report["invalid"] == 2 and report["balanced"]
    assert report["files"][0]["errors"][1] == {"line": 3, "index": 2, "field": "output", "reason": "missing field"}
    code, _, _ = run_cli(capsys, "data", "check", LF / "identity.json", "--strict")
    assert code == 0


@pytest.mark.parametrize("args,message", [
    (["data", "check", "/no/such/file.jsonl"], "no such file"),
    (["data", "check", "{data}", "--format", "nonsense"], "unknown format 'nonsense'"),
    (["data", "check", "{unknown}"], "cannot detect the data format"),
    (["data", "check", "--registry", str(LF), "--dataset", "alpaca_en"], "fetched from the network"),
    (["data", "check", "--registry", str(LF), "--dataset", "kto_en_demo"], "not found"),
    (["data", "check", "--registry", str(LF), "--dataset", "no_such"], "no dataset named"),
])
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, args, message):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"foo": 1, "bar": 2}])
    args = [a.format(data=data, unknown=unknown) for a in args]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_convert_writes_canonical_utf8_and_rejects(capsys, tmp_path, mixed):
    out_path = tmp_path / "out" / "train.jsonl"
    code, out, _ = run_cli(capsys, "data", "convert", mixed, "-o", out_path)
    assert code == 0 and "wrote 2 records" in out
    text = out_path.read_text(encoding="utf-8")
    assert "\\u" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[1]["messages"][1]["content"] == "5"
    rejects = [json.loads(line) for line in (tmp_path / "out" / "train.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, ""), (3, "output")]
    assert set(rejects[0]) >= {"source", "line", "reason", "raw"} and rejects[0]["raw"] == "{oops"
    assert rejects[1]["raw"] == {"instruction": "c"}


def test_convert_dedup_sends_duplicates_to_rejects(capsys, tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "今天天气怎么样？", "output": "今天天气晴朗，适合出门散步，记得带上水。"},
        {"instruction": "今天天气怎么样？", "output": "今天天气晴朗，适合出门散步，记得带上水。"},
        {"instruction": "今天天气怎么样？ ", "output": "今天天气晴朗，适合出门散步，记得带上水！"},
        {"instruction": "Completely different", "output": "Yes indeed."}])
    out_path, rej_path = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    code, _, _ = run_cli(capsys, "data", "convert", src, "-o", out_path, "--rejects", rej_path, "--dedup", "exact")
    assert len(out_path.read_text().splitlines()) == 3
    code, out, _ = run_cli(capsys, "data", "convert", src, "-o", out_path, "--rejects", rej_path, "--dedup", "near")
    assert len(out_path.read_text().splitlines()) == 2
    reasons = [json.loads(line)["reason"] for line in rej_path.read_text().splitlines()]
    assert reasons[0].startswith("near duplicate of") and reasons[0].endswith("d.jsonl:1")
    assert "records read 4" in out


def test_registry_convert_honours_num_samples_and_split(capsys, tmp_path):
    reg = {"small": {"file_name": "d.json", "num_samples": 3},
           "sliced": {"file_name": "d.json", "split": "train[2:4]"},
           "more": {"file_name": "d.json", "num_samples": 7}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(reg))
    (tmp_path / "d.json").write_text(json.dumps([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]))
    for name, n in (("small", 3), ("sliced", 2), ("more", 7)):
        out_path = tmp_path / f"{name}.jsonl"
        code, _, _ = run_cli(capsys, "data", "convert", "--registry", tmp_path, "--dataset", name, "-o", out_path)
        rows = [json.loads(line) for line in out_path.read_text().splitlines()]
        assert code == 0 and len(rows) == n
    sliced = [json.loads(line)["messages"][0]["content"] for line in (tmp_path / "sliced.jsonl").read_text().splitlines()]
    assert sliced == ["q2", "q3"]
    more = {json.loads(line)["messages"][0]["content"] for line in (tmp_path / "more.jsonl").read_text().splitlines()}
    assert more == {f"q{i}" for i in range(5)}  # every record at least once, then extras


def test_formats_lists_every_format(capsys):
    code, out, _ = run_cli(capsys, "data", "formats")
    for name in ("alpaca", "sharegpt", "dialog", "legal", "cot", "multitask", "document", "xtuner", "image_caption"):
        assert name in out


def test_stats_table_and_json(capsys, tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [
        {"instruction": "说个笑话", "output": "哈哈哈哈哈哈哈哈哈哈"}, {"instruction": "hi", "output": "Hello! How can I help?"},
        {"instruction": "hi", "output": "Hello! How can I help?"}, "{bad"])
    code, out, _ = run_cli(capsys, "data", "stats", src, "--tokenizer", "sftkit-tiny")
    assert code == 0
    for needle in ("records: 3", "schema validation rate: 75.0%", "tokens: reply", "duplicates: exact 1",
                   "low_entropy 1", "languages: en 2 (66.7%), zh 1 (33.3%)"):
        assert needle in out, needle
    code, out, _ = run_cli(capsys, "data", "stats", src, "--json")
    q = json.loads(out)
    assert q["records"] == 3 and q["duplicates"]["exact"] == 1 and q["validation"]["invalid"] == 1
    assert q["chars"]["reply"]["max"] == len("Hello! How can I help?")


def test_cli_speaker_map_repair_and_bad_option(capsys, tmp_path):
    dialog = write_jsonl(tmp_path / "d.jsonl", [{"dialog_id": "1", "turns": [
        {"speaker": "客服", "utterance": "您好"}, {"speaker": "客户", "utterance": "退货"}, {"speaker": "客服", "utterance": "好的"}]}])
    out = tmp_path / "o.jsonl"
    code, _, _ = run_cli(capsys, "data", "convert", dialog, "-o", out, "--speaker-map", "客户=user", "客服=assistant")
    roles = [m["role"] for m in json.loads(out.read_text())["messages"]]
    assert code == 0 and roles == ["assistant", "user", "assistant"]
    code, _, err = run_cli(capsys, "data", "convert", dialog, "-o", out, "--speaker-map", "客户=customer")
    assert code == 2 and "user, assistant or system" in err
    bare = write_jsonl(tmp_path / "b.jsonl", [{"messages": ["hi", "hello"]}])
    code, out_text, _ = run_cli(capsys, "data", "check", bare, "--repair", "alternate-roles")
    assert code == 0 and "repairs: alternate-roles 1" in out_text


@pytest.mark.parametrize("argv,message", [
    (["train", "{d}"], "is a folder, not a file"),
    (["train", "{bin}"], "not a UTF-8 text file"),
    (["data", "mix", "{d}", "-o", "{tmp}/o.jsonl"], "is a folder, not a file"),
    (["data", "convert", "{x}", "-o", "{d}"], "is a folder"),
    (["data", "convert", "{x}", "-o", "{tmp}/r.jsonl", "--rejects", "{tmp}/r.jsonl"], "must be different files"),
    (["data", "check", "{x}", "--data-root", "{tmp}/nope"], "no such folder"),
    (["data", "check", "--registry", "{bin}", "--dataset", "x"], "not a UTF-8 text file"),
    (["generate", "--model", "sftkit-tiny", "--data", "{bad}", "-o", "{tmp}/g.jsonl"], "no prompts to reply to"),
    (["chat", "--prompt", "hi", "--tools", "{d}"], "is a folder, not a file"),
])
def test_hostile_command_lines_end_with_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "adir").mkdir()
    (tmp_path / "bin.bin").write_bytes(b"\x00\xff\xfe\x80")
    write_jsonl(tmp_path / "x.jsonl", [{"instruction": "a", "output": "b"}])
    write_jsonl(tmp_path / "bad.jsonl", ["{", "{"])
    names = {"d": tmp_path / "adir", "bin": tmp_path / "bin.bin", "x": tmp_path / "x.jsonl", "tmp": tmp_path,
             "bad": tmp_path / "bad.jsonl"}
    code = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.jsonl").exists()  # nothing half written


def test_numbers_on_the_command_line_are_checked(capsys):
    for argv in (["eval", "--model", "m", "--data", "d", "--max-samples", "0"],
                 ["data", "convert", "x", "-o", "y", "--dedup", "near", "--near-threshold", "5"],
                 ["generate", "--model", "m", "--data", "d", "-o", "o", "--max-new-tokens", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "must be" in capsys.readouterr().err
