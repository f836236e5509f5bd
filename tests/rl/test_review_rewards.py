"""Review (issue 8): a user reward (`module:function` from the config) that raises while training ends
`sftkit train` with a full Python traceback through transformers/trl instead of one line naming the reward
(rl.rewards[i], its name) and what it raised; the bad-length and NaN cases already get one line."""

from __future__ import annotations

import pytest

from sftkit.config_rl import RewardSpec
from sftkit.errors import SftkitError
from sftkit.rewards import load_reward


def boom(completions, records):
    """Test reward (tests.rl.test_review_rewards:boom): a user bug, e.g. a missing meta key."""
    return [float(r["meta"]["final_answer"]) for r in records]


def test_a_user_reward_that_raises_is_one_line_naming_it():
    reward = load_reward(RewardSpec(name="tests.rl.test_review_rewards:boom"), "rl.rewards[0]")
    with pytest.raises(SftkitError, match=r"tests\.rl\.test_review_rewards:boom.*KeyError"):
        reward(["#### 1"], [{"messages": [{"role": "user", "content": "q"}]}])
