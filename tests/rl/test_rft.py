"""Stage rft (rejection sampling, then SFT) on the shipped base after a short SFT warm-up.

The warm-up teaches the reply format ("#### N") to a few addition questions, so sampled answers are a
mix of right and wrong ("What is 2 + 2?" -> "#### 4", "#### 5", ...). Every check recomputes the truth
directly from the question text (a + b), never from sftkit's own verifier.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sftkit.config import load_config
from sftkit.config_rl import CurriculumConfig
from sftkit.errors import SftkitError
from sftkit.models import load_model, load_tokenizer, resolve
from sftkit.tokenize.render import Renderer
from sftkit.train import run_stage
from sftkit.train.rft import round_questions
from tests.conftest import write_jsonl
from tests.train.helpers import batch_loss

QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")
TRAIN = {"max_steps": 10, "batch_size": 8, "learning_rate": 1e-2, "lr_scheduler": "constant", "logging_steps": 5,
         "save_steps": 1000}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def _add(a: int, b: int, reply: str | None = None, final: bool = True) -> dict:
    rec = {"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                        {"role": "assistant", "content": reply if reply is not None else f"#### {a + b}"}]}
    if final:
        rec["meta"] = {"final_answer": str(a + b)}
    return rec


def _truth(record: dict) -> int:
    a, b = QUESTION.search(record["messages"][0]["content"]).groups()
    return int(a) + int(b)


def _right(text: str, truth: int) -> bool:
    """The reply's last "#### N" (else its last number) is the true sum: a direct compare, not sftkit's."""
    marked = re.findall(r"####\s*(-?\d+)", text) or re.findall(r"-?\d+", text)
    return bool(marked) and int(marked[-1]) == truth


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """One config, two stages in one run folder, as examples/rft_gsm8k.yaml: an SFT warm-up on the shipped base
    that answers additions in a few short formats (often wrongly), then one rft round on the same questions."""
    folder = tmp_path_factory.mktemp("chain")
    rng = random.Random(0)
    rows = []
    for i in range(64):  # three reply styles, so right answers come in several distinct texts
        a, b = rng.randint(1, 4), rng.randint(1, 4)
        rows.append(_add(a, b, reply=[f"#### {a + b}", f"{a} + {b} = {a + b}\n#### {a + b}",
                                      f"The answer is {a + b}."][i % 3]))
    data = write_jsonl(folder / "warm.jsonl", rows)
    cfg = load_config(raw={"model": "sftkit-tiny", "method": "lora", "lora": LORA,
                           "data": {"datasets": [{"path": str(data)}], "max_length": 64},
                           "train": {**TRAIN, "output_dir": str(folder / "run")},
                           "rl": {"rft_samples": 4, "max_completion_length": 16},
                           "stages": [{"stage": "sft", "train": {"max_steps": 30}},
                                      {"stage": "rft", "data": {"max_samples": 16}, "train": {"max_steps": 4}}]})
    return run_stage(cfg)


@pytest.fixture
def warm(chain) -> Path:
    """The chain's SFT warm-up run."""
    return chain / "1-sft"


def _questions(folder: Path) -> Path:
    """16 questions (4 demonstrations with an annotator's wrong answer) and, on lines 3 and 9, 2 without any."""
    rng = random.Random(1)
    rows = []
    for i in range(16):
        a, b = rng.randint(1, 4), rng.randint(1, 4)
        rows.append(_add(a, b, reply=f"#### {a + b + 5}" if i % 4 == 1 else None))  # slip: meta keeps the truth
    rows.insert(2, _add(1, 2, reply="I am not sure.", final=False))
    rows.insert(8, _add(2, 3, reply="Let me think.", final=False))
    return write_jsonl(folder / "questions.jsonl", rows)


def _rft(model, data: Path, out: Path, **rl) -> object:
    return load_config(raw={"stage": "rft", "model": str(model), "method": "lora", "lora": LORA,
                            "data": {"datasets": [{"path": str(data)}], "max_length": 64},
                            "train": {**TRAIN, "learning_rate": 3e-3, "output_dir": str(out)},
                            "rl": {"temperature": 1.0, "max_completion_length": 16, **rl}})


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rft_keeps_verified_distinct_answers_and_trains_on_them(warm, tmp_path, monkeypatch, capsys):
    (tmp_path / "rft_rank_rewards.py").write_text(
        "def shorter(completions, records):\n    return [-float(len(c)) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = _questions(tmp_path)
    keep = 2
    cfg = _rft(warm, data, tmp_path / "run", rft_samples=8, rft_keep=keep,
               rewards=[{"name": "answer_match"}, {"name": "rft_rank_rewards:shorter"}])
    run = run_stage(cfg)
    out = capsys.readouterr().out

    # records without a final answer: left out, named with their lines, in rejects.jsonl with the field
    line = next(x for x in out.splitlines() if "left out" in x)
    assert "2 of 18" in line and "2 without a final answer (meta.final_answer)" in line
    assert 0 < line.index("line 3") < line.index("line 9")
    rejects = [r for r in _jsonl(run / "rejects.jsonl") if r.get("stage") == "rft"]
    assert sorted(r["line"] for r in rejects) == [3, 9]
    assert all(r["field"] == "meta.final_answer" and r["reason"] for r in rejects)

    # every sample, with the direct truth: what should have been kept per question
    sampled = _jsonl(run / "round-1" / "sampled.jsonl")
    src = {i + 1: rec for i, rec in enumerate(_jsonl(data))}
    by_q: dict[int, list[dict]] = {}
    for s in sampled:
        by_q.setdefault(s["origin"]["line"], []).append(s)
    assert sorted(by_q) == sorted(n for n, rec in src.items() if rec.get("meta")) and all(
        len(v) == 8 for v in by_q.values())

    samples = _jsonl(run / "round-1" / "samples.jsonl")
    assert samples
    kept: dict[int, list[dict]] = {}
    for rec in samples:
        n = rec["origin"]["line"]
        kept.setdefault(n, []).append(rec)
        assert rec["messages"][:-1] == src[n]["messages"][:1]  # the question's prompt, its origin
        assert _right(rec["messages"][-1]["content"], _truth(src[n]))  # only verified-correct replies
    for n, recs in kept.items():
        texts = [r["messages"][-1]["content"].strip() for r in recs]
        assert len(texts) == len(set(texts))  # no duplicates
        demos = [r for r in recs if r["meta"]["rft"]["source"] == "demonstration"]
        own = src[n]["messages"][1]["content"]
        assert [d["messages"][-1]["content"] for d in demos] == ([own] if _right(own, _truth(src[n])) else [])
    for n, rows in by_q.items():  # the sampled ones: the `keep` shortest distinct correct, in sampling order on ties
        right = [s["text"] for s in rows if _right(s["text"], _truth(src[n])) and s["finish"] != "length"]
        own = src[n]["messages"][1]["content"].strip() if _right(src[n]["messages"][1]["content"],
                                                                 _truth(src[n])) else None
        distinct = list(dict.fromkeys(t.strip() for t in sorted(right, key=len) if t.strip() != own))
        got = [r["messages"][-1]["content"].strip() for r in kept.get(n, []) if r["meta"]["rft"]["source"] == "sample"]
        assert got == distinct[:keep], (n, got, right)
    assert any(len(v) > 1 for v in kept.values())  # dedupe and keep had something to do

    report = json.loads((run / "data_report.json").read_text())["rounds"]["1"]
    with_right = sum(any(_right(s["text"], _truth(src[n])) for s in rows) for n, rows in by_q.items())
    assert report["questions"] == 16 and report["sampled"] == 128
    assert report["pass_at_k"] == pytest.approx(with_right / 16) and 0 < with_right < 16
    assert report["kept"] == sum(r["meta"]["rft"]["source"] == "sample" for r in samples)

    # the SFT step trained on exactly those records: their loss fell, only the adapter changed
    tok = load_tokenizer("sftkit-tiny")
    rows = [r for r in Renderer(tok).render_many(samples) if r is not None]
    start, trained = load_model(str(warm)), load_model(str(run))
    assert batch_loss(trained, rows, tok.pad_token_id) < batch_loss(start, rows, tok.pad_token_id) - 0.05
    before = load_file(warm / "final" / "adapter_model.safetensors")
    after = load_file(run / "round-1" / "final" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all(not torch.equal(before[k], after[k]) for k in before
                                                  if "lora_B" in k)
    assert not list((run / "round-1" / "final").glob("model*.safetensors"))  # the base was not saved, so not changed
    ids = torch.tensor([rows[0]["input_ids"]])
    base = load_model("sftkit-tiny").eval()
    with torch.no_grad(), trained.disable_adapter():
        assert torch.equal(trained.eval()(input_ids=ids).logits, base(input_ids=ids).logits)
    assert Path(resolve(str(run))) == run / "round-1" / "final"


def test_two_rounds_continue_from_each_other_and_a_rerun_redoes_only_what_is_missing(warm, tmp_path, capsys):
    data = _questions(tmp_path)
    cfg = _rft(warm, data, tmp_path / "run", rft_samples=4, rft_keep=1, rft_rounds=2)
    run = run_stage(cfg)
    r1, r2 = run / "round-1", run / "round-2"
    assert json.loads((r1 / "final" / "sftkit.json").read_text())["base_model"] == "sftkit-tiny"
    assert load_config(r2 / "config.yaml").model == str(r1)  # round 2 sampled from and trained round 1's model
    assert Path(resolve(str(run))) == r2 / "final"
    rounds = json.loads((run / "data_report.json").read_text())["rounds"]
    assert set(rounds) == {"1", "2"} and all(rounds[k]["sampled"] == 64 for k in rounds)
    weights = (r2 / "final" / "adapter_model.safetensors").read_bytes()
    mtime = (r2 / "final" / "adapter_model.safetensors").stat().st_mtime_ns
    capsys.readouterr()

    run_stage(cfg)  # started again: both rounds are complete, nothing is sampled or trained
    out = capsys.readouterr().out
    assert out.count("already trained") == 2 and "sampling" not in out and "fine-tuning" not in out
    assert (r2 / "final" / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    assert (r2 / "final" / "adapter_model.safetensors").read_bytes() == weights
    assert set(json.loads((run / "data_report.json").read_text())["rounds"]) == {"1", "2"}

    # round 1's model lost (a kill while saving it): resumed, its samples are reused, round 2 built on it is redone
    sampled = (r1 / "sampled.jsonl").stat().st_mtime_ns
    shutil.rmtree(r1 / "final")
    cfg.train.resume = "auto"
    run_stage(cfg)
    out = capsys.readouterr().out
    assert "rft round 1/2: samples already in" in out and (r1 / "sampled.jsonl").stat().st_mtime_ns == sampled
    assert "rft round 2: 64 answers" in out and out.count("fine-tuning") == 2
    assert out.split("rft round 2: fine-tuning")[1].count("{'loss'") == 2  # its 10 steps anew, not resumed
    assert (r2 / "final" / "adapter_model.safetensors").stat().st_mtime_ns != mtime
    assert set(json.loads((run / "data_report.json").read_text())["rounds"]) == {"1", "2"}


def test_rft_as_the_second_stage_of_a_chain(chain):
    rft = chain / "2-rft"
    assert load_config(rft / "round-1" / "config.yaml").model == str(chain / "1-sft")  # sampled from the warm-up
    assert json.loads((rft / "data_report.json").read_text())["rounds"]["1"]["questions"] == 16
    assert Path(resolve(str(chain))) == rft / "round-1" / "final"  # `sftkit eval/chat <run>` use the last round


def test_curriculum_rounds_go_from_easy_to_all_questions():
    def q(i, **meta):
        return {"messages": [{"role": "user", "content": f"q{i}"}], "meta": {"final_answer": "1", **meta}}

    formats = CurriculumConfig(by="format", field="kind")
    recs = [q(0, kind="open"), q(1, kind="yes_no"), q(2, kind="odd"), q(3, kind="multiple_choice"), q(4, kind="yes_no")]
    asked = [[r["messages"][0]["content"] for r in round_questions(recs, formats, n, 4)] for n in (1, 2, 3, 4)]
    assert asked == [["q1", "q4"], ["q1", "q4", "q3"], ["q1", "q4", "q3", "q0"], ["q1", "q4", "q3", "q0", "q2"]]
    by_difficulty = CurriculumConfig(by="difficulty")
    recs = [q(i, difficulty=d) for i, d in enumerate([3, 1, 2, 1])]
    assert [len(round_questions(recs, by_difficulty, n, 2)) for n in (1, 2)] == [3, 4]  # levels 1, 2 | 3
    assert round_questions(recs, CurriculumConfig(), 1, 2) == recs
    with pytest.raises(SftkitError, match="not a number"):
        round_questions([*recs, q(9)], by_difficulty, 1, 2)


def test_no_question_with_a_final_answer_is_one_line_error(tmp_path):
    data = write_jsonl(tmp_path / "q.jsonl", [_add(1, 1, reply="two", final=False)] * 3)
    with pytest.raises(SftkitError, match="none of the 3 training records is a question with a final answer") as e:
        run_stage(_rft("sftkit-tiny", data, tmp_path / "run"))
    assert "\n" not in str(e.value)
    assert len([r for r in _jsonl(tmp_path / "run" / "rejects.jsonl") if r["field"] == "meta.final_answer"]) == 3


def test_a_round_without_any_correct_answer_stops_with_the_reason(tmp_path):
    data = write_jsonl(tmp_path / "q.jsonl", [
        {"messages": [{"role": "user", "content": f"Say hello {i}."}, {"role": "assistant", "content": "hi"}],
         "meta": {"final_answer": "987654321"}} for i in range(3)])
    with pytest.raises(SftkitError, match="nothing to fine-tune on: of 6 sampled answers 0 were verified correct") as e:
        run_stage(_rft("sftkit-tiny", data, tmp_path / "run", rft_samples=2, max_completion_length=8))
    assert "\n" not in str(e.value)
    assert len(_jsonl(tmp_path / "run" / "round-1" / "sampled.jsonl")) == 6
    assert not (tmp_path / "run" / "round-1" / "samples.jsonl").exists()
