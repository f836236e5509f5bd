"""Preference stages (dpo, kto, orpo, simpo): rows equal the SFT render, each stage trains through trl's trainer,
exactly the intended parameters change, the reference is the start model, and bad input is refused clearly."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from sftkit.config import load_config
from sftkit.errors import SftkitError
from sftkit.tokenize.render import IGNORE, Renderer, RenderOptions
from sftkit.train.pref_rows import PrefRenderer, record_problem
from tests.conftest import LF, write_jsonl
from tests.tokenize.test_templates_official import official

PROMPT = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a colour."},
          {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "另一个？ Another one?"}]
PAIR = {"messages": PROMPT, "chosen": {"role": "assistant", "content": "Red. Cheers!"},
        "rejected": {"role": "assistant", "content": "  well... maybe green\nor not"},
        "origin": {"file": "p.jsonl", "line": 1, "index": 0}}
TOPICS = ["cats", "rain", "tea", "music", "trains", "books", "the sea", "winter", "bread", "stars", "maps", "bees"]


def pairs(n: int, seed: int = 0) -> list[dict]:
    """Preference pairs with a clear style difference (chosen: 'Sure! ... Cheers!', rejected: 'Well, ...')."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = rng.choice(TOPICS)
        out.append({"messages": [{"role": "user", "content": f"Tell me about {t} ({i})."}],
                    "chosen": {"role": "assistant", "content": f"Sure! {t.capitalize()} are lovely. Cheers!"},
                    "rejected": {"role": "assistant", "content": f"Well, i guess {t} exist or whatever"}})
    return out


def sft_row(tokenizer, template, messages):
    return Renderer(tokenizer, template, RenderOptions(max_length=100_000, mask_history=True))(
        [{"messages": messages}])[0]


# ---- rows ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["chatml", "qwen", "llama3", None])
def test_pair_rows_are_the_sft_render_of_each_reply(tokenizer, template):
    (row,) = PrefRenderer(tokenizer, template, "dpo", 1024).rows([PAIR])
    assert row["origin"] == PAIR["origin"]
    for key in ("chosen", "rejected"):
        ref = sft_row(tokenizer, template, PROMPT + [PAIR[key]])
        ids = row["prompt_ids"] + row[f"{key}_ids"]
        assert ref["input_ids"][:len(ids)] == ids
        learned = [lab != IGNORE for lab in ref["labels"]]
        assert learned[:len(ids)] == [False] * len(row["prompt_ids"]) + [True] * len(row[f"{key}_ids"])
        assert not any(learned[len(ids):])  # after the reply's end-of-turn token: nothing learned (next turn)


@pytest.mark.parametrize("name", ["qwen", "llama3"])
def test_pair_rows_equal_the_official_chat_template(tokenizer, name):
    """Independent reference: the model's official Jinja template through apply_chat_template."""
    (row,) = PrefRenderer(tokenizer, name, "dpo", 1024).rows([PAIR])
    kw = {"tokenize": False, "chat_template": official(name), "bos_token": "<|begin_of_text|>"}
    prompt = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, **kw)
    assert row["prompt_ids"] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for key in ("chosen", "rejected"):
        full = tokenizer(tokenizer.apply_chat_template(PROMPT + [PAIR[key]], **kw), add_special_tokens=False)
        ids = row["prompt_ids"] + row[f"{key}_ids"]
        assert full["input_ids"][:len(ids)] == ids
        assert tokenizer.decode(row[f"{key}_ids"]).endswith("<|im_end|>" if name == "qwen" else "<|eot_id|>")


def test_kto_rows_read_labels_and_unpair_preference_pairs(tokenizer):
    kto = {"messages": PROMPT + [{"role": "assistant", "content": "Red."}], "label": False}
    rows = PrefRenderer(tokenizer, "chatml", "kto", 1024).rows([kto, PAIR])
    assert [r["label"] for r in rows] == [False, True, False]
    ref = sft_row(tokenizer, "chatml", kto["messages"])
    assert ref["input_ids"][:len(rows[0]["prompt_ids"]) + len(rows[0]["completion_ids"])] == \
        rows[0]["prompt_ids"] + rows[0]["completion_ids"]
    pair_row = PrefRenderer(tokenizer, "chatml", "dpo", 1024).rows([PAIR])[0]
    assert rows[1]["completion_ids"] == pair_row["chosen_ids"] and rows[2]["completion_ids"] == pair_row["rejected_ids"]


def test_truncation_keeps_the_prompt_end_and_the_reply_start(tokenizer):
    full = PrefRenderer(tokenizer, "chatml", "dpo", 1024).rows([PAIR])[0]
    pr = PrefRenderer(tokenizer, "chatml", "dpo", 24)
    (row,) = pr.rows([PAIR])
    assert pr.counts["truncated"] == 1
    for key in ("chosen_ids", "rejected_ids"):
        assert len(row["prompt_ids"]) + len(row[key]) <= 24
        assert full[key][:len(row[key])] == row[key]
    assert full["prompt_ids"][-len(row["prompt_ids"]):] == row["prompt_ids"]
    drop = PrefRenderer(tokenizer, "chatml", "dpo", 24, overflow="drop")
    assert drop.rows([PAIR]) == [] and "too long" in drop.rejects[0]["reason"]


def test_records_of_the_wrong_kind_are_rejected_with_their_reason(tokenizer):
    conv = {"messages": PROMPT + [{"role": "assistant", "content": "Red."}], "origin": {"file": "c.jsonl",
                                                                                       "line": 3, "index": 2}}
    no_rejected = {"messages": PROMPT, "chosen": {"role": "assistant", "content": "x"}}
    assert record_problem(no_rejected, "dpo")[0] == "rejected"
    assert record_problem(conv, "dpo")[0] == "chosen"
    assert record_problem(conv, "kto")[0] == "label"
    assert record_problem({**conv, "label": "yes"}, "kto")[0] == "label"
    assert record_problem({"text": "plain"}, "orpo")[0] == "text"
    pr = PrefRenderer(tokenizer, "chatml", "simpo", 1024)
    assert pr.rows([conv, PAIR]) and len(pr.rejects) == 1
    rej = pr.rejects[0]
    assert (rej["source"], rej["line"], rej["field"]) == ("c.jsonl", 3, "chosen") and "conversation" in rej["reason"]


# ---- training ----------------------------------------------------------------------------------------------

def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def pref_config(tmp_path, stage="dpo", method="lora", steps=8, **extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(tmp_path / "pref.jsonl", pairs(40))
    raw = {"stage": stage, "method": method,
           "data": {"datasets": [{"path": str(data)}], "max_length": 64, "val_size": 0.2},
           "train": {"output_dir": str(tmp_path / "run"), "max_steps": steps, "batch_size": 4, "learning_rate": 5e-3,
                     "lr_scheduler": "constant", "logging_steps": 2, "save_steps": 1000},
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "freeze": {"trainable_layers": 1},
           "rl": {"beta": 2.0 if stage == "simpo" else 0.1}}
    return load_config(raw=_merge(raw, extra))


def train_and_compare(cfg):
    """Build, snapshot the parameters, train; return (trainer, names of the parameters that changed, before)."""
    from sftkit.train.preference import build
    from sftkit.train.run_dir import release_run_dir

    trainer, run_dir, _, _ = build(cfg)
    try:
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        first = trainer.evaluate()
        trainer.train()
        last = trainer.evaluate()
    finally:
        release_run_dir(run_dir)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    return trainer, changed, before, first, last


@pytest.mark.parametrize("stage", ["dpo", "kto", "orpo", "simpo"])
def test_each_stage_trains_lora_only_and_the_preference_moves(tmp_path, stage):
    trainer, changed, before, first, last = train_and_compare(pref_config(tmp_path, stage))
    lora = {n for n in before if "lora_" in n}
    assert changed and changed <= lora
    assert {n for n in lora if "lora_B" in n} <= changed  # every adapter matrix B moved from 0
    assert last["eval_loss"] < first["eval_loss"]
    assert last["eval_rewards/margins"] > first["eval_rewards/margins"]
    if stage in ("dpo", "kto"):  # the reference is the base with the adapter off: no model copy, no adapter copy
        assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/margins" in x for x in log)


def test_dpo_reference_is_the_start_model(tmp_path):
    """trl's reference log-probs after training equal the untouched base model's, computed here directly."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from sftkit.models import load_model

    trainer, *_ = train_and_compare(pref_config(tmp_path, "dpo", steps=4))
    rows = [trainer.eval_dataset[i] for i in range(4)]
    batch = DataCollatorForPreference(pad_token_id=0)(rows)
    ref_c, ref_r = trainer.compute_ref_log_probs(trainer.model, batch)
    base = load_model("sftkit-tiny", precision="fp32").eval()
    mine = []
    with torch.no_grad():
        for r in rows:
            for key in ("chosen_ids", "rejected_ids"):
                ids = torch.tensor([r["prompt_ids"] + r[key]])
                logp = torch.log_softmax(base(input_ids=ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
                mine.append(logp[len(r["prompt_ids"]) - 1:].sum().item())
    assert torch.allclose(torch.stack([ref_c, ref_r], 1).flatten(), torch.tensor(mine), atol=1e-3)
    with torch.no_grad():  # and the trained policy is no longer the reference
        policy = trainer.model(input_ids=batch["input_ids"][:1]).logits
        with trainer.model.disable_adapter():
            assert not torch.allclose(policy, trainer.model(input_ids=batch["input_ids"][:1]).logits)


def test_dpo_sft_weight_adds_the_chosen_replys_nll_to_trls_loss(tmp_path):
    """At the start (policy = reference) trl's sigmoid DPO loss is log 2 per pair; with ``rl.dpo_sft_weight`` w the
    loss is log 2 + w * the chosen replies' mean token NLL, the NLL computed here from the base model directly.
    Trained alike, the weighted run keeps the chosen reply likelier than pure DPO does."""
    import math

    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from sftkit.models import load_model
    from sftkit.train.preference import build
    from sftkit.train.run_dir import release_run_dir

    base = load_model("sftkit-tiny", precision="fp32").eval()
    results = {}
    for w in (0.0, 0.5):
        cfg = pref_config(tmp_path / str(w), "dpo", steps=6, rl={"dpo_sft_weight": w})
        trainer, run_dir, _, _ = build(cfg)
        try:
            assert trainer.args.loss_type == (["sigmoid", "sft"] if w else ["sigmoid"])
            assert trainer.args.loss_weights == ([1.0, w] if w else None)
            rows = [trainer.train_dataset[i] for i in range(4)]
            with torch.no_grad():
                loss = trainer.compute_loss(trainer.model, DataCollatorForPreference(pad_token_id=0)(rows)).item()
                nll = []
                for r in rows:
                    ids = torch.tensor([r["prompt_ids"] + r["chosen_ids"]])
                    logp = torch.log_softmax(base(input_ids=ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
                    nll += (-logp[len(r["prompt_ids"]) - 1:]).tolist()
            assert loss == pytest.approx(math.log(2) + w * sum(nll) / len(nll), abs=1e-4)
            trainer.train()
            results[w] = trainer.evaluate()
        finally:
            release_run_dir(run_dir)
    assert results[0.5]["eval_logps/chosen"] > results[0.0]["eval_logps/chosen"]
    assert results[0.5]["eval_rewards/margins"] > 0 and results[0.0]["eval_rewards/margins"] > 0


def test_dpo_full_and_freeze_train_the_intended_parameters_against_a_frozen_copy(tmp_path):
    trainer, changed, before, first, last = train_and_compare(pref_config(tmp_path / "full", "dpo", "full", steps=4,
                                                                          train={"learning_rate": 1e-3}))
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    assert all(torch.equal(p, before[n]) for n, p in trainer.ref_model.named_parameters())  # reference unchanged
    assert len(changed) > len(before) // 2 and last["eval_loss"] < first["eval_loss"]
    trainer, changed, before, *_ = train_and_compare(pref_config(tmp_path / "freeze", "dpo", "freeze", steps=3))
    assert changed and all(".layers.5." in n for n in changed)


def test_sft_then_dpo_chain_in_one_run_folder(tmp_path):
    from sftkit.models import load_model
    from sftkit.train import run_stage

    pref = write_jsonl(tmp_path / "pref.jsonl", pairs(16))
    raw = {"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
           "data": {"datasets": [{"path": str(LF / "identity.json"), "replace": {"{{name}}": "A", "{{author}}": "B"}}],
                    "max_length": 64, "max_samples": 16},
           "train": {"output_dir": str(tmp_path / "chain"), "max_steps": 2, "batch_size": 4, "save_steps": 1000},
           "stages": [{"stage": "sft"}, {"stage": "dpo", "data": {"datasets": [{"path": str(pref)}],
                                                                  "max_samples": None}}]}
    root = run_stage(load_config(raw=raw))
    info = json.loads((root / "2-dpo" / "final" / "sftkit.json").read_text())
    assert info["stage"] == "dpo" and info["adapter"] and info["base_model"] == str(root / "1-sft")
    assert hasattr(load_model(str(root / "2-dpo" / "final")), "peft_config")


# ---- bad input -----------------------------------------------------------------------------------------------

def test_sft_data_given_to_dpo_is_one_clear_error_naming_file_line_and_field(tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "yo"}]}] * 3)
    cfg = pref_config(tmp_path, "dpo", data={"datasets": [{"path": str(data)}]})
    from sftkit.train.preference import train

    expected = r"no usable training records.*sft\.jsonl line \d, field 'chosen'.*conversation without"
    with pytest.raises(SftkitError, match=expected):
        train(cfg)
    rejects = (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 3 and json.loads(rejects[0])["field"] == "chosen"


def test_kto_without_labels_and_small_batches_are_refused(tmp_path):
    from sftkit.train.preference import train

    data = write_jsonl(tmp_path / "k.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "yo"}]}])
    with pytest.raises(SftkitError, match="field 'label'.*no `label`"):
        train(pref_config(tmp_path, "kto", data={"datasets": [{"path": str(data)}]}))
    with pytest.raises(SftkitError, match="batch_size >= 2"):
        train(pref_config(tmp_path, "kto", train={"batch_size": 1, "output_dir": str(tmp_path / "r2")}))


def test_preference_record_without_rejected_is_rejected_by_the_loader(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [copy.deepcopy(pairs(1)[0]) | {"rejected": None}, *pairs(4)])
    from sftkit.models import load_tokenizer
    from sftkit.train.pref_rows import prepare

    cfg = pref_config(tmp_path, "dpo", data={"datasets": [{"path": str(data)}], "val_size": 0})
    (tmp_path / "run").mkdir()
    train_rows, _, report = prepare(cfg, load_tokenizer("sftkit-tiny"), tmp_path / "run")
    assert len(train_rows) == 4
    rej = [json.loads(x) for x in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    assert len(rej) == 1 and rej[0]["line"] == 1 and rej[0]["reason"]


@pytest.mark.parametrize("name", ["dpo", "kto"])
def test_example_configs_load_and_their_data_renders(tokenizer, name):
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / f"{name}.yaml")
    assert cfg.stage == name and cfg.method == "lora"
    from sftkit.data.source import load

    (pool,) = load(cfg.data.datasets)
    pr = PrefRenderer(tokenizer, cfg.template, cfg.stage, cfg.data.max_length)
    rows = pr.rows(pool.records[:20])
    assert not pr.rejects and len(rows) == 20 * (2 if name == "kto" else 1)
