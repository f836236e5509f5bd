"""Training recipes (sft.py reads top to bottom) and their helpers.

``STAGES`` maps each value of the config's ``stage`` to the module of its recipe, whose ``train(cfg)`` runs
one job and returns the run folder. Adding a stage (dpo, kto, orpo, simpo, grpo, ppo, rft) is one literal in
``SFTConfig.stage``, one entry here and one recipe module beside ``sft.py``; methods list the stages they
support in ``Method.stages``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

STAGES: dict[str, str] = {"sft": "sftkit.train.sft"}


def run_stage(cfg) -> Path:
    """Run the recipe of ``cfg.stage``; return the run folder."""
    return importlib.import_module(STAGES[cfg.stage]).train(cfg)
