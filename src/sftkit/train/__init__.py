"""Training recipes (each reads top to bottom) and their helpers.

``STAGES`` maps each value of the config's ``stage`` to the module of its recipe, whose ``train(cfg)`` runs
one job and returns the run folder: ``sft.py``; ``preference.py`` (dpo, kto, orpo, simpo through trl's
trainers); ``grpo.py`` (grpo, rloo through trl's trainers, rollouts through ``sftkit.generation``);
``rft.py`` (rejection sampling, then SFT). A config with ``stages`` chains several recipes in one run
folder (``chain.py``). Methods list the stages they support in ``Method.stages``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

STAGES: dict[str, str] = {
    "sft": "sftkit.train.sft",
    "dpo": "sftkit.train.preference", "kto": "sftkit.train.preference",
    "orpo": "sftkit.train.preference", "simpo": "sftkit.train.preference",
    "grpo": "sftkit.train.grpo", "rloo": "sftkit.train.grpo",
    "rft": "sftkit.train.rft",
}


def run_stage(cfg) -> Path:
    """Run the recipe of ``cfg.stage`` (or every stage of ``cfg.stages`` in order); return the run folder."""
    if cfg.stages:
        from sftkit.train.chain import run_chain

        return run_chain(cfg)
    return importlib.import_module(STAGES[cfg.stage]).train(cfg)
