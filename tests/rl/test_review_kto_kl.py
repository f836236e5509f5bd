"""Review (issue 8): KTO's KL term is estimated from MISMATCHED (prompt, completion) pairs (trl rotates the
completions by one within each batch). trl's own unpairing puts all chosen rows of a batch before all rejected
rows, so the rotation pairs a prompt with another prompt's reply. sftkit's rows interleave each pair (chosen,
rejected, chosen, rejected, ...), so every rejected row's "mismatched" KL completion is the chosen reply of its
own prompt: half of the KL sample is matched pairs, biasing KTO's reference point z0."""

from __future__ import annotations

from tests.conftest import write_jsonl
from tests.rl.test_preference import pairs, pref_config


def test_kto_kl_partners_are_replies_to_other_prompts(tmp_path):
    """Each record's replies are made unique (the shared ``pairs`` repeat a topic's replies word for word, and
    two records of one topic in a batch leave no mismatched text to pair with), so "a prompt's own reply" can
    be told from another prompt's reply by its tokens."""
    from sftkit.train.preference import build
    from sftkit.train.run_dir import release_run_dir

    recs = [{**p, "chosen": {**p["chosen"], "content": f"{p['chosen']['content']} ({i})"},
             "rejected": {**p["rejected"], "content": f"{p['rejected']['content']} ({i})"}}
            for i, p in enumerate(pairs(40))]
    data = write_jsonl(tmp_path / "unique.jsonl", recs)
    trainer, run_dir, _, _ = build(pref_config(tmp_path, "kto", steps=1, data={"datasets": [{"path": str(data)}]}))
    try:
        rows = list(trainer.train_dataset)
    finally:
        release_run_dir(run_dir)
    real = {(tuple(r["prompt_ids"]), tuple(r["completion_ids"])) for r in rows}
    matched = [r for r in rows if (tuple(r["prompt_ids"]), tuple(r["KL_completion_ids"])) in real]
    assert not matched, f"{len(matched)} of {len(rows)} KL pairs are a prompt's own reply"
