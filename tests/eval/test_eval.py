"""sftkit eval end to end: the fine-tune scores higher than the base on held-out data; compare, review, plot."""

from __future__ import annotations

import csv
import json
import random

import pytest

from sftkit.cli import main
from sftkit.config import load_config
from sftkit.eval.run import evaluate
from sftkit.train.sft import train
from tests.conftest import LF, write_jsonl


@pytest.fixture(scope="module")
def identity_split(tmp_path_factory):
    rows = json.loads((LF / "identity.json").read_text(encoding="utf-8"))
    text = json.dumps(rows, ensure_ascii=False).replace("{{name}}", "Aurora").replace("{{author}}", "Team Dawn")
    rows = json.loads(text)
    random.Random(3).shuffle(rows)
    d = tmp_path_factory.mktemp("identity")
    return write_jsonl(d / "train.jsonl", rows[12:]), write_jsonl(d / "heldout.jsonl", rows[:12])


@pytest.fixture(scope="module")
def evals(identity_split, tmp_path_factory):
    """Evaluations of the shipped base and of a short LoRA fine-tune of it, on the same held-out split."""
    train_file, held = identity_split
    out = tmp_path_factory.mktemp("evals")
    cfg = load_config(raw={"model": "sftkit-tiny", "method": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
                           "data": {"datasets": [{"path": str(train_file)}], "max_length": 256},
                           "eval": {"data": str(held), "every_steps": 40, "max_samples": 4, "max_new_tokens": 16},
                           "train": {"output_dir": str(out / "run"), "learning_rate": 5e-3, "epochs": 8,
                                     "batch_size": 8, "logging_steps": 10, "save_steps": 1000}})
    run = train(cfg)
    base = evaluate("sftkit-tiny", str(held), out / "base", max_new_tokens=48)
    tuned = evaluate(str(run), str(held), out / "tuned", max_new_tokens=48)
    return out, run, base, tuned


def test_fine_tune_scores_higher_than_base(evals):
    out, _, base, tuned = evals
    assert tuned["rouge_char"]["rougeL"] > base["rouge_char"]["rougeL"] + 10
    assert tuned["bleu"] > base["bleu"]
    assert tuned["loss"] < base["loss"] and tuned["perplexity"] < base["perplexity"]
    for d in ("base", "tuned"):
        assert {"metrics.json", "predictions.jsonl", "report.md"} <= {p.name for p in (out / d).iterdir()}
    pred = json.loads((out / "tuned" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"prompt", "reference", "prediction", "scores"} <= set(pred)
    report = (out / "tuned" / "report.md").read_text()
    assert "signature" in report and "jieba" in report


def test_training_logs_generation_metrics(evals):
    _, run, _, _ = evals
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_gen_rougeL" in m and "loss" not in m for m in logs)


def test_compare_sheet_human_and_plot(evals, capsys, tmp_path):
    out, run, _, _ = evals
    assert main(["eval", "--compare", str(out / "base"), str(out / "tuned")]) == 0
    text = capsys.readouterr().out
    assert "B - A" in text and "samples that changed most" in text

    sheet = tmp_path / "review.csv"
    assert main(["eval", "sheet", str(out / "base"), str(out / "tuned"), "-o", str(sheet)]) == 0
    assert "models hidden" in capsys.readouterr().out
    rows = list(csv.DictReader(open(sheet, encoding="utf-8-sig")))
    assert len(rows) == 12 and rows[0]["score_1"] == "" and "tuned" not in json.dumps(rows)
    key = json.loads((tmp_path / "review.csv.key.json").read_text())
    # two annotators: both score the fine-tuned reply 5 and the base reply 1, one disagreement
    for name, flip in (("a.csv", None), ("b.csv", "0")):
        with open(tmp_path / name, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                models = key["rows"][r["id"]]["models"]
                r = dict(r)
                for col, m in enumerate(models):
                    r[f"score_{col + 1}"] = "5" if m == 1 else "1"
                if flip and r["id"] == flip:
                    r["score_1"] = "3"
                w.writerow(r)
    # the key stays next to review.csv (annotators never see it) and is found there
    assert main(["eval", "human", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mean_score"][str(out / "tuned")] > res["mean_score"][str(out / "base")]
    assert 0.8 < res["kappa"]["kappa"] < 1.0 and res["kappa"]["n"] == 24

    png = tmp_path / "curves.png"
    assert main(["plot", str(run), "-o", str(png)]) == 0 and png.stat().st_size > 5000


def test_eval_config_example_and_errors(tmp_path, capsys):
    from tests.conftest import REPO

    out = tmp_path / "gsm"
    code = main(["eval", "--config", str(REPO / "examples" / "eval_gsm8k.yaml"), "--max-samples", "3",
                 "--max-new-tokens", "4", "-o", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 3 and metrics["answer_samples"] == 3 and metrics["answer_accuracy"] is not None
    capsys.readouterr()
    for args, message in ((["eval", "--model", "sftkit-tiny", "--data", str(tmp_path / "missing.jsonl")], "no such file"),
                          (["eval", "--model", str(tmp_path / "nope"), "--data", str(LF / "identity.json")], "cannot load"),
                          (["plot", str(tmp_path)], "no metrics.jsonl"),
                          (["eval", "--compare", str(tmp_path), str(tmp_path)], "no metrics.json")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_before_vs_after_in_one_command(evals, tmp_path, capsys):
    _, run, _, _ = evals
    code = main(["eval", "--model", "sftkit-tiny", "--model", str(run), "--data", str(LF / "identity.json"), "--max-samples", "4",
                 "--max-new-tokens", "8", "-o", str(tmp_path / "cmp")])
    assert code == 0
    assert (tmp_path / "cmp" / "a" / "metrics.json").exists() and (tmp_path / "cmp" / "b" / "metrics.json").exists()
    assert "B - A" in capsys.readouterr().out


def test_eval_records_use_chosen_replies_and_count_what_is_skipped(tmp_path):
    from sftkit.eval.run import load_eval_records

    data = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "q", "chosen": "good", "rejected": "bad"}, {"text": "just text"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": False},
        {"instruction": "x"}, {"question": "1+1?", "answer": "#### 2"}])
    skipped = {}
    items = load_eval_records(str(data), skipped=skipped)
    assert [it["reference"] for it in items] == ["good", "#### 2"] and items[1]["final_answer"] == "2"
    assert skipped == {"text record (no prompt)": 1, "no reference reply": 1, "invalid record": 1}


def test_single_run_sheet_has_prediction_and_score_columns(evals, tmp_path):
    from sftkit.eval.human import human_scores, make_sheet

    out, _, _, _ = evals
    sheet = make_sheet([str(out / "tuned")], tmp_path / "one.csv", seed=1)
    rows = list(csv.DictReader(open(sheet, encoding="utf-8-sig")))
    assert list(rows[0]) == ["id", "prompt", "reference", "prediction", "score", "comment"]
    for name, score in (("x.csv", "4"), ("y.csv", "4")):
        with open(tmp_path / name, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({**r, "score": score} for r in rows)
    res = human_scores(tmp_path / "x.csv", tmp_path / "y.csv")
    assert res["mean_score"] == {str(out / "tuned"): 4.0} and res["kappa"]["kappa"] == 1.0
