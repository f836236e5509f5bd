"""GRPO and RLOO stages on the shipped base: trl's trainers with rollouts from sftkit.generation, sftkit's rewards,
metrics and completions logged, exactly the intended parameters trained, the reward moving the right way."""

from __future__ import annotations

import json

import pytest
import torch

import sftkit.train.rollout as rollout_mod
from sftkit.config import load_config
from sftkit.errors import SftkitError
from sftkit.train import grpo, run_stage
from sftkit.train.run_dir import release_run_dir
from tests.conftest import write_jsonl

QUESTIONS = [("What is 2 plus 3?", "5"), ("What is 4 plus 4?", "8"), ("What is 7 minus 2?", "5"),
             ("What is 3 times 3?", "9"), ("What is 10 minus 6?", "4"), ("What is 1 plus 1?", "2"),
             ("What is 6 plus 3?", "9"), ("What is 9 minus 4?", "5")]


def digit_share(completions, records):
    """Test reward (loaded as tests.rl.test_grpo:digit_share): the share of a reply's characters that are digits."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


@pytest.fixture
def questions(tmp_path):
    """Prompt-only records with a final answer."""
    return write_jsonl(tmp_path / "q.jsonl", [{"prompt": q, "meta": {"final_answer": a}} for q, a in QUESTIONS])


@pytest.fixture
def qa(tmp_path):
    """SFT records (question + worked answer ending in #### N): the ReFT recipe trains both stages on them."""
    return write_jsonl(tmp_path / "qa.jsonl", [{"question": q, "answer": f"The answer is {a}.\n#### {a}"}
                                               for q, a in QUESTIONS])


def config(data, out, stage="grpo", method="lora", rewards=None, rl=None, ev=None, r=4, **train):
    raw = {"stage": stage, "model": "sftkit-tiny", "method": method,
           "data": {"datasets": [{"path": str(data)}], "max_length": 128},
           "train": {"output_dir": str(out), "max_steps": 3, "batch_size": 2, "learning_rate": 1e-3,
                     "lr_scheduler": "constant", "logging_steps": 1, "save_steps": 1000, "precision": "fp32",
                     **train},
           "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0}, "freeze": {"trainable_layers": 1}, "eval": ev or {},
           "rl": {"num_generations": 4, "max_completion_length": 8,
                  "rewards": rewards or [{"name": "answer_match"}, {"name": "length", "weight": 0.5,
                                                                   "options": {"max_chars": 10}}],
                  **(rl or {})}}
    return load_config(raw=raw)


def counting(monkeypatch):
    """Wrap the real sftkit.generation.generate used by the rollouts (it still runs) and count its calls."""
    calls = []
    real = rollout_mod.generate

    def wrapped(*args, **kwargs):
        calls.append(len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(rollout_mod, "generate", wrapped)
    return calls


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_grpo_lora_trains_only_the_adapter_with_sftkit_rollouts_and_logs(questions, qa, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    cfg = config(questions, tmp_path / "run", ev={"data": str(qa), "every_steps": 2, "max_samples": 2,
                                                   "max_new_tokens": 4})
    trainer, run_dir, _ = grpo.build(cfg)
    try:
        model = trainer.model
        assert trainer.ref_model is None and "ref" not in model.peft_config  # reference: the adapter switched off
        assert {n for n, p in model.named_parameters() if p.requires_grad} == \
            {n for n, _ in model.named_parameters() if "lora_" in n}
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer.train()
    finally:
        release_run_dir(run_dir)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)
    assert calls == [2, 2, 2]  # one rollout per step: 2 questions, 4 completions each in one call

    lines = metrics(run_dir)
    train_logs = [m for m in lines if "loss" in m]
    assert [m["step"] for m in train_logs] == [1, 2, 3]
    for key in ("rewards/answer_match/mean", "rewards/answer_match/std", "rewards/length/mean",
                "rewards/length/std", "reward", "kl", "completions/mean_length"):
        assert all(key in m for m in train_logs), key
    samples = [m for m in lines if "completions" in m]
    assert [m["step"] for m in samples] == [1, 2, 3]
    first = samples[0]["completions"]
    assert len(first) == 2 and {q for q, _ in QUESTIONS} >= {s["prompt"] for s in first}
    assert all(set(s["rewards"]) == {"answer_match", "length"} for s in first)
    evals = [m for m in lines if "eval_gen_answer_accuracy" in m]
    assert [m["step"] for m in evals] == [2]
    assert not any(k.startswith("rewards/") for k in evals[0])  # the reward window stays on the training line


def test_rollout_prompts_are_the_chat_template_and_completions_end_their_turn(questions, tmp_path):
    cfg = config(questions, tmp_path / "run", rl={"max_completion_length": 64})
    trainer, run_dir, tokenizer = grpo.build(cfg)
    release_run_dir(run_dir)
    prompt = trainer.train_dataset[0]["prompt"]
    out = trainer.rollout_func([prompt] * 4 + [trainer.train_dataset[1]["prompt"]] * 4, trainer)
    conv = [{"role": "user", "content": json.loads(trainer.train_dataset[0]["record"])["messages"][0]["content"]}]
    expected = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert out["prompt_ids"][0] == list(expected) and out["logprobs"] is None
    assert len(out["completion_ids"]) == 8
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    finished = [ids for ids in out["completion_ids"] if len(ids) < 64]
    assert finished and all(ids[-1] == end for ids in finished)  # the end-of-turn token is part of what is learned


def test_grpo_reward_rises_with_a_user_reward(questions, tmp_path):
    cfg = config(questions, tmp_path / "run", rewards=[{"name": "tests.rl.test_grpo:digit_share"}],
                 rl={"num_generations": 8, "max_completion_length": 6, "kl_coef": 0.0, "log_completions": 0},
                 r=8, max_steps=16, logging_steps=4, learning_rate=5e-3)
    run_dir = run_stage(cfg)
    rewards = [m["reward"] for m in metrics(run_dir) if "reward" in m]
    assert len(rewards) == 4
    assert rewards[-1] > rewards[0] + 0.3, rewards
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    info = json.loads((run_dir / "final" / "sftkit.json").read_text())
    assert info["stage"] == "grpo" and info["adapter"]


def test_grpo_full_keeps_a_reference_with_the_start_weights(questions, tmp_path):
    cfg = config(questions, tmp_path / "run", method="full", max_steps=2, learning_rate=1e-4)
    trainer, run_dir, _ = grpo.build(cfg)
    try:
        start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        assert trainer.ref_model is not None
        trainer.train()
    finally:
        release_run_dir(run_dir)
    ref = dict(trainer.ref_model.named_parameters())
    assert all(torch.equal(start[n], ref[n].detach()) for n in start)  # the reference stays the start model
    assert any(not torch.equal(start[n], p.detach()) for n, p in trainer.model.named_parameters())


def test_rloo_runs_with_sftkit_rollouts_and_tensorboard_text(questions, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    run_dir = run_stage(config(questions, tmp_path / "run", stage="rloo", max_steps=2, tensorboard=True))
    assert calls == [2, 2]
    logs = [m for m in metrics(run_dir) if "loss" in m]
    assert len(logs) == 2 and all("rewards/answer_match/mean" in m for m in logs)
    events = list(run_dir.rglob("events.out.tfevents*"))
    assert events and any(b"completions" in e.read_bytes() for e in events)
    assert json.loads((run_dir / "final" / "sftkit.json").read_text())["stage"] == "rloo"


def test_record_without_final_answer_is_rejected_and_named(tmp_path, capsys):
    data = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "What is 2 plus 3?", "meta": {"final_answer": "5"}},
                                               {"prompt": "Say hello."}, {"prompt": "What is 1 plus 1?",
                                                                          "meta": {"final_answer": "2"}}])
    cfg = config(data, tmp_path / "run")
    trainer, run_dir, _ = grpo.build(cfg)
    release_run_dir(run_dir)
    assert len(trainer.train_dataset) == 2
    out = capsys.readouterr().out
    assert f"1 of 3 records not used (first: {data}:2" in out
    (rej,) = [json.loads(x) for x in (run_dir / "rejects.jsonl").read_text().splitlines()]
    assert (rej["source"], rej["line"], rej["field"]) == (str(data), 2, "meta.final_answer")


def test_no_record_with_a_final_answer_is_one_line_error(tmp_path):
    data = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "Say hello."}, {"prompt": "Say bye."}])
    with pytest.raises(SftkitError, match=rf"no usable question .*2 of 2 records .*first: {data}:1, no final answer"):
        run_stage(config(data, tmp_path / "run"))


def test_reward_path_that_does_not_import_is_named(questions, tmp_path):
    with pytest.raises(SftkitError, match=r"rl\.rewards\[0\]\.name: 'no_such_module_xyz:score': module .* does not import"):
        run_stage(config(questions, tmp_path / "run", rewards=[{"name": "no_such_module_xyz:score"}]))
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing written before the rewards load


def test_reft_chain_sft_then_grpo_in_one_run_folder(qa, tmp_path):
    raw = config(qa, tmp_path / "reft").model_dump()
    raw["stages"] = [{"stage": "sft", "train": {"max_steps": 3, "batch_size": 4}},
                     {"stage": "grpo", "train": {"max_steps": 2}}]
    root = run_stage(load_config(raw=raw))
    pipeline = json.loads((root / "pipeline.json").read_text())
    assert [s["stage"] for s in pipeline["stages"]] == ["sft", "grpo"]
    sft_final, grpo_final = root / "1-sft" / "final", root / "2-grpo" / "final"
    assert (sft_final / "adapter_model.safetensors").is_file() and (grpo_final / "adapter_model.safetensors").is_file()
    assert json.loads((grpo_final / "sftkit.json").read_text())["stage"] == "grpo"
    report = json.loads((root / "2-grpo" / "data_report.json").read_text())
    assert report["questions"] == len(QUESTIONS)  # the same questions as the warm-up, demonstrations ignored
    assert any("rewards/answer_match/mean" in m for m in metrics(root / "2-grpo"))


def test_rollout_groups_of_repeated_prompts():
    from sftkit.train.rollout import _groups

    assert _groups(["a", "a", "b", "b"]) == (["a", "b"], 2)  # trl's repeats: one generate call with n=2
    assert _groups(["a", "a", "b"]) == (["a", "a", "b"], 1)  # uneven: each prompt answered once, in order
    assert _groups(["a", "b", "a", "b"]) == (["a", "b", "a", "b"], 1)
