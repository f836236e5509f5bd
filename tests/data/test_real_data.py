"""The real public data users bring: every LLaMA-Factory dataset in the registry, and GSM8K."""

from __future__ import annotations

import json
import shutil

import pytest

from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths
from sftkit.data.registry import load_registry, registry_sources
from sftkit.schema import record_kind
from tests.conftest import GSM8K, LF

LOCAL = [name for name, e in load_registry(LF).items() if e.get("file_name")]


def convert(sources, opts=None):
    opts = opts or ConvertOptions()
    report, records, rejects = Report(), [], []
    for _, recs, rej in iter_converted(sources, opts, report):
        records.extend(recs or [])
        if rej:
            rejects.append(rej)
    return records, rejects, report


def _fill_missing_demo_files(root):
    """Write small files in LLaMA-Factory's shapes for registry entries whose demo file is not in our copy."""
    user_asst = lambda u, a: [{"role": "user", "content": u}, {"role": "assistant", "content": a}]  # noqa: E731
    shapes = {
        "glaive_toolcall_en_demo.json": [{"conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"},
            {"from": "observation", "value": "{\"temp\": 18}"}, {"from": "gpt", "value": "It is 18 degrees."}],
            "tools": "[{\"name\": \"get_weather\", \"description\": \"weather\", \"parameters\": {}}]"}],
        "dpo_en_demo.json": [{"conversations": [{"from": "human", "value": "Hi"}],
                              "chosen": {"from": "gpt", "value": "Hello!"}, "rejected": {"from": "gpt", "value": "Go away."}}],
        "kto_en_demo.json": [{"messages": user_asst("Hi", "Hello!"), "label": True},
                             {"messages": user_asst("Hi", "Go away."), "label": False}],
        "mllm_audio_demo.json": [{"messages": user_asst("<audio>What is this?", "A bell."), "audios": ["mllm_demo_data/1.mp3"]}],
        "mllm_video_demo.json": [{"messages": user_asst("<video>What happens?", "A goal."), "videos": ["mllm_demo_data/1.mp4"]}],
        "mllm_video_audio_demo.json": [{"messages": user_asst("<video><audio>What happens?", "A goal."),
                                        "videos": ["mllm_demo_data/1.mp4"], "audios": ["mllm_demo_data/1.mp3"]}],
    }
    for name, rows in shapes.items():
        if not (root / name).exists():
            (root / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    for media in ("1.mp3", "1.mp4"):
        if not (root / "mllm_demo_data" / media).exists():
            (root / "mllm_demo_data" / media).write_bytes(b"\x00")
    if not (root / "wiki_demo.txt").exists():
        (root / "wiki_demo.txt").write_text("Anarchism is a political philosophy.\n\nIt is sceptical of authority.\n")


@pytest.fixture(scope="module")
def full_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("lf")
    shutil.copytree(LF, root, dirs_exist_ok=True)
    _fill_missing_demo_files(root)
    return root


@pytest.mark.parametrize("name", LOCAL)
def test_every_local_registry_dataset_converts_completely(full_registry, name):
    records, rejects, report = convert(registry_sources(full_registry, [name], ConvertOptions()))
    assert not rejects, rejects[:3]
    f = report.files[0]
    assert f.read == f.converted > 0
    entry = load_registry(full_registry)[name]
    kinds = {record_kind(r) for r in records}
    if entry.get("ranking"):
        assert kinds == {"preference"}
    elif "kto_tag" in entry.get("columns", {}):
        assert kinds == {"kto"}
    elif name in ("c4_demo", "wiki_demo"):
        assert kinds == {"text"}
    else:
        assert kinds == {"conversation"}


@pytest.mark.parametrize("name", [n for n in LOCAL if (LF / load_registry(LF)[n]["file_name"]).exists()])
def test_shipped_files_convert_with_exact_counts(name):
    entry = load_registry(LF)[name]
    path = LF / entry["file_name"]
    expected = sum(1 for _ in path.open()) if path.suffix == ".jsonl" else len(json.loads(path.read_text("utf-8")))
    records, rejects, report = convert(sources_from_paths([path], ConvertOptions()))
    assert not rejects and report.files[0].read == expected == len(records)


def test_registry_and_detection_agree_on_identity_and_tool_calls():
    for name in ("identity", "glaive_toolcall_zh_demo", "dpo_zh_demo", "mllm_demo"):
        via_registry, _, _ = convert(registry_sources(LF, [name], ConvertOptions()))
        path = LF / load_registry(LF)[name]["file_name"]
        detected, _, _ = convert(sources_from_paths([path], ConvertOptions()))
        assert via_registry == detected


def test_tool_calls_and_images_in_real_files():
    records, _, _ = convert(registry_sources(LF, ["glaive_toolcall_zh_demo"], ConvertOptions()))
    with_calls = [r for r in records if any(m.get("tool_calls") for m in r["messages"])]
    assert len(with_calls) > 100 and all(r["tools"] for r in with_calls)
    records, _, _ = convert(registry_sources(LF, ["mllm_demo"], ConvertOptions()))
    for r in records:
        placeholders = sum(m["content"].count("<image>") for m in r["messages"] if m["role"] == "user")
        assert placeholders == len(r["images"]) >= 1


def test_gsm8k_keeps_final_answers():
    records, rejects, report = convert(sources_from_paths([GSM8K / "train.jsonl"], ConvertOptions()))
    assert not rejects and len(records) == 7473
    raw = [json.loads(line) for line in (GSM8K / "train.jsonl").open()]
    for rec, row in zip(records, raw, strict=True):
        assert rec["meta"]["final_answer"] == row["answer"].rsplit("####", 1)[1].strip()
        assert rec["messages"][1]["content"] == row["answer"]
