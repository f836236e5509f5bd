"""sftkit eval end to end: the fine-tune scores higher than the base on held-out data; compare, review, plot."""

from __future__ import annotations

import csv
import json
import random

import pytest

from sftkit.cli import main
from sftkit.config import load_config
from sftkit.eval.run import evaluate
from sftkit.generation import GenerationOptions
from sftkit.train.sft import train
from tests.conftest import GSM8K, LF, write_jsonl


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
    base = evaluate("sftkit-tiny", str(held), out / "base", options=GenerationOptions(max_new_tokens=48))
    tuned = evaluate(str(run), str(held), out / "tuned", options=GenerationOptions(max_new_tokens=48))
    return out, run, base, tuned


def test_fine_tune_scores_higher_than_base(evals):
    out, _, base, tuned = evals
    assert tuned["rouge_char"]["rougeL"] > base["rouge_char"]["rougeL"] + 10
    assert tuned["bleu"] > base["bleu"]
    assert tuned["loss"] < base["loss"] and tuned["perplexity"] < base["perplexity"]
    for d in ("base", "tuned"):
        assert {"metrics.json", "predictions.jsonl", "report.md"} <= {p.name for p in (out / d).iterdir()}
    pred = json.loads((out / "tuned" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"prompt", "reference", "prediction", "scores", "tool_calls", "finish_reason"} <= set(pred)
    report = (out / "tuned" / "report.md").read_text()
    assert "signature" in report and "jieba" in report


def test_training_logs_generation_metrics(evals):
    _, run, _, _ = evals
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_gen_rougeL" in m and "loss" not in m for m in logs)
    # a step that is due for both keeps its training-loss line (the eval's log must not swallow it)
    assert [m["step"] for m in logs if "eval_gen_rougeL" in m] == [40, 80]
    assert {40, 80} <= {m["step"] for m in logs if "loss" in m}


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
    assert res["mean_score"] == {str(out / "tuned"): 4.0}
    # both gave every cell the same score: agreement by chance is 1, so kappa is undefined (not a perfect 1.0)
    assert res["kappa"]["kappa"] is None and not res["kappa"]["acceptable"]


def _direct_loss(items: list[dict]) -> float:
    """Loss on the reference replies computed by hand with plain transformers: chat template text, one
    tokenization of prompt + reply, cross-entropy over the reply tokens and its end-of-turn token."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from sftkit.models import SHIPPED

    folder = SHIPPED["sftkit-tiny"]
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    total, count = 0.0, 0
    for it in items:
        prompt = tok(tok.apply_chat_template(it["prompt"], tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
        full = tok(tok.apply_chat_template([*it["prompt"], {"role": "assistant", "content": it["reference"]}],
                                           tokenize=False), add_special_tokens=False)["input_ids"]
        assert full[:len(prompt)] == prompt
        stop = len(full) - 1 - full[::-1].index(end)  # the reply's end-of-turn token is learned too
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0]
        total += F.cross_entropy(logits[len(prompt) - 1:stop], torch.tensor(full[len(prompt):stop + 1]),
                                 reduction="sum").item()
        count += stop + 1 - len(prompt)
    return total / count


def test_reference_loss_equals_a_direct_computation_whatever_the_tokenizer_state(tmp_path):
    from sftkit.eval.run import load_eval_records, reference_loss
    from sftkit.infer import Chat

    data = str(GSM8K / "test.jsonl")
    items = load_eval_records(data, max_samples=6)
    direct = _direct_loss(items)
    # evaluate generates (batched, left padded) before it measures the loss
    metrics = evaluate("sftkit-tiny", data, tmp_path / "gsm", max_samples=6,
                       options=GenerationOptions(max_new_tokens=4, batch_size=3))
    assert metrics["loss"] == pytest.approx(direct, abs=2e-4)
    # a tokenizer someone left with left padding switched on (what batched encoding does) changes nothing
    chat = Chat("sftkit-tiny")
    chat.tokenizer.padding_side = "left"
    chat.tokenizer(["a", "a much longer text"], padding=True)
    assert chat.tokenizer.backend_tokenizer.padding is not None
    assert reference_loss(chat, items, batch_size=6)[0] == pytest.approx(direct, abs=1e-4)


def test_eval_prompts_carry_each_records_tools(tmp_path):
    from sftkit.models import load_tokenizer

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    rows = [{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "Sunny."}],
             "tools": tools},
            {"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "Sunny."}]}]
    data = write_jsonl(tmp_path / "tools.jsonl", rows)
    evaluate("sftkit-tiny", str(data), tmp_path / "out", options=GenerationOptions(max_new_tokens=3))
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    tok = load_tokenizer("sftkit-tiny")
    assert preds[0]["tools"] == tools and preds[1]["tools"] is None
    for p in preds:  # the prompt each prediction was made from is the chat template's, tools included
        want = tok.apply_chat_template(p["messages"], tools=p["tools"], add_generation_prompt=True)["input_ids"]
        assert p["prompt_tokens"] == len(want)
    assert preds[0]["prompt_tokens"] > preds[1]["prompt_tokens"] + 10


def test_eval_config_max_samples_stop_and_one_max_new_tokens_default(tmp_path):
    import yaml

    from sftkit.cli import _generation_options, build_parser
    from sftkit.config import EvalConfig
    from sftkit.generation import DEFAULT_MAX_NEW_TOKENS

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({"model": "sftkit-tiny", "eval": {"data": str(GSM8K / "test.jsonl"), "max_samples": 2,
                                                                    "max_new_tokens": 5, "stop": ["\n"]}}))
    assert main(["eval", "--config", str(cfg), "-o", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["samples"] == 2 and metrics["generation"]["max_new_tokens"] == 5
    assert metrics["generation"]["stop"] == ["\n"]
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert all("\n" not in p["prediction"] for p in preds)
    parser = build_parser()
    defaults = [_generation_options(parser.parse_args(args)).max_new_tokens for args in
                (["chat"], ["generate", "--model", "m", "--data", "d", "-o", "o"], ["eval", "--model", "m"])]
    assert defaults == [DEFAULT_MAX_NEW_TOKENS] * 3 == [EvalConfig().max_new_tokens] * 3
    assert all(f.description for f in EvalConfig.model_fields.values())


def _fake_eval(d, prompts=("p1", "p2", "p3")):
    """An evaluation folder as `sftkit eval -o` writes it (only the fields the readers use)."""
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"model": "m", "data": "x", "samples": len(prompts), "bleu": 1.0}))
    write_jsonl(d / "predictions.jsonl", [{"prompt": p, "reference": "r", "prediction": "y",
                                           "scores": {"rouge_char": {"rougeL": 50.0}}} for p in prompts])
    return d


def _one_line_error(capsys, args, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("file,content,problem", [
    ("metrics.json", b'{"samples": 3, "bleu": ', "not valid JSON"),
    ("metrics.json", b"[1, 2]", "a JSON list"),
    ("metrics.json", bytes(range(256)), "not UTF-8"),
    ("predictions.jsonl", b'{"prompt": "p1", "reference": "r", "prediction": "y"}\n{"prompt": "p2", "ref', "not valid JSON"),
    ("predictions.jsonl", b"[1]\n", "not a prediction record"),
    ("predictions.jsonl", None, "no predictions.jsonl"),
])
def test_compare_of_damaged_eval_folders_is_one_line_naming_the_file(tmp_path, capsys, file, content, problem):
    good, bad = _fake_eval(tmp_path / "good"), _fake_eval(tmp_path / "bad")
    if content is None:
        (bad / file).unlink()
    else:
        (bad / file).write_bytes(content)
    _one_line_error(capsys, ["eval", "--compare", str(good), str(bad)], str(bad / file), problem)
    assert main(["eval", "--compare", str(good), str(good)]) == 0
    assert "BLEU" in capsys.readouterr().out


def test_plot_skips_a_truncated_last_line_and_rejects_damaged_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    good = "".join(json.dumps({"step": s, "loss": 2.0 / s, "learning_rate": 1e-4}) + "\n" for s in (1, 2, 3))
    (run / "metrics.jsonl").write_text(good + '{"step": 4, "lo')  # what a killed run leaves
    png = tmp_path / "c.png"
    assert main(["plot", str(run), "-o", str(png)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"wrote {png}" and png.stat().st_size > 1000
    assert f"{run / 'metrics.jsonl'}:4: skipped the incomplete last line" in err
    # a bad line in the middle, a non-object line, a binary file: one line naming the file and line
    (run / "metrics.jsonl").write_text('{"step": 1, "lo\n' + good)
    _one_line_error(capsys, ["plot", str(run), "-o", str(png)], f"{run / 'metrics.jsonl'}:1: not a metrics line")
    (run / "metrics.jsonl").write_text(good + "[1, 2]\n")
    _one_line_error(capsys, ["plot", str(run), "-o", str(png)], f"{run / 'metrics.jsonl'}:4:", "a JSON list")
    (run / "metrics.jsonl").write_bytes(b"\xff\xfe\x00\x01\n" + bytes(range(256)))
    _one_line_error(capsys, ["plot", str(run), "-o", str(png)], f"{run / 'metrics.jsonl'}:1:", "not UTF-8")


def test_plot_output_paths(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2)))
    _one_line_error(capsys, ["plot", str(run), "-o", str(tmp_path / "p.xyz")], "p.xyz", "'.xyz'", ".png", ".pdf", ".svg")
    assert not (tmp_path / "p.xyz").exists()
    assert main(["plot", str(run), "-o", str(tmp_path / "noext")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'noext.png'}" and (tmp_path / "noext.png").is_file()
    (tmp_path / "adir").mkdir()
    assert main(["plot", str(run), "-o", str(tmp_path / "adir")]) == 0
    written = tmp_path / "adir" / "curves.png"
    assert capsys.readouterr().out.strip() == f"wrote {written}" and written.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(run), "-o", str(tmp_path / "c.svg")]) == 0 and b"<svg" in (tmp_path / "c.svg").read_bytes()


def test_human_scores_errors_name_the_missing_or_unreadable_file(tmp_path, capsys):
    from sftkit.eval.human import make_sheet

    sheet = make_sheet([str(_fake_eval(tmp_path / "base")), str(_fake_eval(tmp_path / "tuned"))], tmp_path / "r.csv")
    a, b, key = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "r.csv.key.json"
    # missing sheets are reported as missing even with no key file anywhere near them
    _one_line_error(capsys, ["eval", "human", str(tmp_path / "x" / "a.csv"), str(tmp_path / "x" / "b.csv")],
                    str(tmp_path / "x" / "a.csv"), "no such review sheet")
    _one_line_error(capsys, ["eval", "human", str(sheet), str(b), "--key", str(key)], str(b), "no such review sheet")
    a.write_bytes(bytes(range(256)) * 3)
    _one_line_error(capsys, ["eval", "human", str(a), str(sheet), "--key", str(key)], str(a), "not UTF-8")
    a.write_text(sheet.read_text(encoding="utf-8-sig").replace(",,,\n", ",4,4,\n"), encoding="utf-8")
    b.write_text(sheet.read_text(encoding="utf-8-sig").replace(",,,\n", ",4,4,\n"), encoding="utf-8")
    bad_key = tmp_path / "bad.key.json"
    bad_key.write_bytes(b"\x80\x81binary")
    _one_line_error(capsys, ["eval", "human", str(a), str(b), "--key", str(bad_key)], str(bad_key), "not UTF-8")
    bad_key.write_text("[]")
    _one_line_error(capsys, ["eval", "human", str(a), str(b), "--key", str(bad_key)], str(bad_key), "not a review-sheet key")
    # every cell scored 4 by both: agreement by chance is 1, so kappa is undefined and the report says so
    assert main(["eval", "human", str(a), str(b), "--key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "Cohen's kappa on 'score': undefined" in out and "OK" not in out
