"""The RL demo's task: held-out tickets never seen in training, the slip only in training demonstrations."""

from __future__ import annotations

from sftkit.demo_tasks import SLIP_TEAM, SLIP_TO, make_data
from sftkit.rewards import final_answer, is_correct


def test_demo_data_is_held_out_and_slipped_only_where_said():
    data = make_data(0, slip_rate=0.6)
    assert (len(data["train"]), len(data["dev"]), len(data["test"])) == (400, 200, 500)
    seen = {r["messages"][0]["content"] for r in data["train"]}
    assert not any(r["messages"][0]["content"] in seen for r in data["dev"] + data["test"])
    returns = [r for r in data["train"] if r["meta"]["final_answer"] == SLIP_TEAM]
    slipped = [r for r in returns if r["messages"][1]["content"] == f"#### {SLIP_TO}"]
    assert 0.45 < len(slipped) / len(returns) < 0.75  # about 60% of the return tickets misrouted
    for r in data["train"]:  # only return tickets slip; the verified answer is always the real team
        wrong = not is_correct(r["messages"][1]["content"], r)
        assert wrong == r["meta"]["slipped"] and final_answer(r) == r["meta"]["kind"]
        assert not wrong or r["meta"]["final_answer"] == SLIP_TEAM
    assert all(not r["meta"]["slipped"] and is_correct(r["messages"][1]["content"], r) for r in data["test"])
    assert make_data(0, slip_rate=0.6) == data and make_data(1, slip_rate=0.6) != data  # seeded
