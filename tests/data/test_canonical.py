"""sftkit's own output read back as the ``canonical`` format: a byte-for-byte fixed point, with lineage
(``origin``) kept and media paths relative to the data root so a dataset folder can move."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from sftkit.data.formats import detect_format
from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths
from sftkit.data.registry import registry_sources
from tests.conftest import LF, write_jsonl
from tests.data.helpers import one, run

REAL = ["alpaca_en_demo.json", "glaive_toolcall_zh_demo.json", "dpo_zh_demo.json", "mllm_demo.json", "identity.json",
        "c4_demo.jsonl"]


def _every_shape(folder):
    """One record of each shape sftkit reads, media included (written as JSONL in ``folder``)."""
    (folder / "media").mkdir()
    for name in ("v.mp4", "a.wav", "p.png"):
        (folder / "media" / name).write_bytes(b"\x00")
    u = lambda c: {"role": "user", "content": c}  # noqa: E731
    a = lambda c, **k: {"role": "assistant", "content": c, **k}  # noqa: E731
    wav = "data:audio/wav;base64," + base64.b64encode(b"RIFF").decode()
    rows = [
        {"messages": [u([{"type": "text", "text": "Look: "}, {"type": "image_url", "image_url": {"url": "media/p.png"}},
                         {"type": "video", "video": "media/v.mp4"}, {"type": "input_audio",
                                                                      "input_audio": {"data": "UklGRg==", "format": "wav"}}]),
                      a([{"type": "reasoning", "text": "think"}, {"type": "text", "text": "Seen."}], loss_weight=True)]},
        {"messages": [u("<audio>Hear?"), a("Yes.")], "audios": [wav], "meta": "not an object", "id": 1},
        {"conversations": [{"from": "human", "value": "q", "lang": "en"}, {"from": "gpt", "value": "a", "loss_weight": 0},
                           {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}], "meta": {"id": 2}, "id": 3},
        {"chosen_messages": [u("q"), a("good")], "rejected_messages": [u("q"), a("bad")], "score": 0.5},
        {"messages": [u("q"), a("a")], "label": False},
        {"problem": "1+1?", "reasoning_steps": ["1+1=2"], "final_answer": 2},
        {"doc_id": "D", "chunks": ["part one", {"text": "part two", "start": 8}]},
        {"messages": [u("q"), u("q again"), a("a", reasoning_content="r")], "videos": ["media/v.mp4"], "tools": []},
    ]
    rows[-1]["messages"][0]["content"] = "<video>q"
    return write_jsonl(folder / "shapes.jsonl", rows)


def _convert(paths, out, **opts):
    options = ConvertOptions(**opts)
    report = convert_files(sources_from_paths(paths, options), out, None, options)
    assert report.balanced
    return report


def test_converting_sftkit_output_again_is_a_byte_identical_fixed_point(tmp_path):
    ds = tmp_path / "lf"
    ds.mkdir()
    for name in REAL:
        shutil.copy(LF / name, ds / name)
    shutil.copytree(LF / "mllm_demo_data", ds / "mllm_demo_data")
    inputs = [ds / name for name in REAL] + [_every_shape(ds)]
    first = _convert(inputs, ds / "out1.jsonl")
    assert first.total("rejected") == 0
    second = _convert([ds / "out1.jsonl"], ds / "out2.jsonl")
    assert second.files[0].format == "canonical" and second.total("rejected") == 0
    assert set(second.files[0].warnings) == {"non_alternating"}  # nothing left to fix; the odd turn order is kept
    one_bytes, two_bytes = (ds / "out1.jsonl").read_bytes(), (ds / "out2.jsonl").read_bytes()
    assert one_bytes == two_bytes
    rows = [json.loads(line) for line in one_bytes.decode("utf-8").splitlines()]
    assert len(rows) == first.total("records_out") == second.total("records_out")
    images = [p for r in rows for p in r.get("images", [])]
    assert "mllm_demo_data/1.jpg" in images and "media/p.png" in images  # written relative to the data root
    assert all(not p.startswith("/") for r in rows for k in ("images", "videos", "audios") for p in r.get(k, []))
    assert {r["origin"]["file"] for r in rows} == {str(p) for p in inputs}  # lineage survives the second pass


def test_registry_output_with_images_is_a_fixed_point_under_an_explicit_data_root(tmp_path):
    opts = ConvertOptions(data_root=str(LF))
    out1, out2 = tmp_path / "a" / "out1.jsonl", tmp_path / "b" / "out2.jsonl"
    written = convert_files(registry_sources(LF, ["mllm_demo", "glaive_toolcall_zh_demo"], opts), out1, None, opts)
    assert written.media_outside == 0  # every image lies under the data root: stored relative to it
    report = _convert([out1], out2, data_root=str(LF))
    assert report.total("rejected") == 0 and out1.read_bytes() == out2.read_bytes()
    first = [json.loads(line) for line in out1.read_text().splitlines()]
    assert {p for r in first for p in r.get("images", [])} >= {"mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"}
    # without the data root, the canonical file's own folder is the root, where the images are not
    report = _convert([out1], tmp_path / "c" / "out3.jsonl")
    assert report.total("rejected") == 6 and "file not found" in report.files[0].errors[0]["reason"]


def test_media_outside_the_output_folder_are_written_absolute_with_a_note(tmp_path):
    opts = ConvertOptions()
    out = tmp_path / "out.jsonl"
    written = convert_files(registry_sources(LF, ["mllm_demo"], opts), out, None, opts)
    assert written.media_outside == 8 and written.to_dict()["media_root"] == str((LF / "mllm_demo_data").resolve())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(p.startswith(str(LF.resolve())) for r in rows for p in r["images"])
    again = _convert([out], tmp_path / "again.jsonl", data_root=written.media_root)
    assert again.total("rejected") == 0 and (tmp_path / "again.jsonl").read_bytes() != b""


def test_a_dataset_folder_with_its_canonical_file_can_move(tmp_path):
    ds = tmp_path / "dataset"
    (ds / "img").mkdir(parents=True)
    (ds / "img" / "cat.jpg").write_bytes(b"\xff\xd8")
    write_jsonl(ds / "data.jsonl", [{"messages": [{"role": "user", "content": "<image>What?"},
                                                  {"role": "assistant", "content": "A cat."}], "images": ["img/cat.jpg"]}])
    _convert([ds / "data.jsonl"], ds / "train.jsonl")
    moved = tmp_path / "elsewhere" / "dataset"
    shutil.move(str(ds), str(moved))
    records, rejects, report = _read(moved / "train.jsonl")
    assert not rejects and report.files[0].format == "canonical"
    assert records[0]["images"] == [str(moved / "img" / "cat.jpg")]
    assert records[0]["origin"] == {"file": str(ds / "data.jsonl"), "line": 1, "index": 0}


def _read(path, **opts):
    from sftkit.data.pipeline import Report, iter_converted

    options, report = ConvertOptions(**opts), Report()
    records, rejects = [], []
    for _, recs, rej in iter_converted(sources_from_paths([path], options), options, report):
        records.extend(recs or [])
        rejects += [rej] if rej else []
    return records, rejects, report


QA = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("row,name", [
    ({"messages": QA}, "openai"),
    ({"messages": QA, "tools": []}, "openai"),
    ({"messages": QA, "images": ["a.jpg"]}, "openai"),
    ({"messages": QA, "meta": {}}, "openai"),
    ({"messages": QA, "images": [], "tools": [], "meta": {}}, "canonical"),
    ({"messages": QA[:1], "images": [], "tools": [], "meta": {}}, "canonical"),
    ({"messages": [], "meta": {}, "origin": {"file": "f", "line": None, "index": 0}}, "canonical"),
    ({"text": "t", "meta": {}, "origin": {"file": "f", "line": 3, "index": 2}}, "canonical"),
    ({"text": "t", "meta": {}}, "text"),
])
def test_canonical_detection_does_not_steal_plain_files(row, name):
    assert detect_format(row) == name


def test_origin_names_file_line_and_index_and_a_valid_one_is_kept(tmp_path):
    keep = {"file": "corpus/a.jsonl", "line": 7, "index": 6}
    records, _, _ = run(tmp_path, [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d", "origin": keep},
                                   {"instruction": "e", "output": "f", "origin": "web"}])
    where = str(tmp_path / "data.jsonl")
    assert records[0]["origin"] == {"file": where, "line": 1, "index": 0}
    assert records[1]["origin"] == keep and "origin" not in records[1]["meta"]
    assert records[2]["origin"] == {"file": where, "line": 3, "index": 2}
    assert records[2]["meta"] == {"origin": "web"}  # not lineage: kept as metadata, nothing lost


def test_forced_canonical_format_reads_a_plain_openai_record(tmp_path):
    rec, rep = one(tmp_path, {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
                   format="canonical")
    assert rep.format == "canonical" and rec["messages"][1] == {"role": "assistant", "content": "a"}
