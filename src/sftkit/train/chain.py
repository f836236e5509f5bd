"""Several stages in one run folder (ReFT: SFT warm-up, then GRPO on the same questions; RLHF: SFT, then DPO).

A config with ``stages: [{stage: sft, ...}, {stage: grpo, ...}]`` is a base config plus one override per
stage. Stage ``i`` is the base with its override merged in (mappings merge key by key, anything else
replaces), trains into ``<output_dir>/<i+1>-<stage>`` (unless it names its own ``train.output_dir``) and
starts from the previous stage's model (unless it names its own ``model``). ``pipeline.json`` in the
run folder lists the stages (folders relative to it, so the run opens from any working directory); ``sftkit chat/eval/export <output_dir>`` use the last stage's model.
A stage whose ``final/`` is complete is not trained again when the chain is started a second time
(``train.resume=auto`` after a kill goes on from the interrupted stage).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from pydantic import ValidationError

from sftkit.errors import SftkitError

PIPELINE = "pipeline.json"


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stage_dir(output_dir: str, i: int, stage: str) -> str:
    return str(Path(output_dir) / f"{i + 1}-{stage}")


def expand(cfg, base_dir: Path | None, source: str = "config") -> list:
    """The chain's stages as full, checked configs (relative data paths resolve from ``base_dir``)."""
    from sftkit.config import SFTConfig, _explain

    base = cfg.model_dump(exclude={"stages"})
    out = []
    for i, override in enumerate(cfg.stages):
        raw = _merge(base, override)
        if "output_dir" not in (override.get("train") or {}):
            raw["train"]["output_dir"] = stage_dir(cfg.train.output_dir, i, override["stage"])
        # absolute, so the next stage's start and the saved base_model work from any working directory
        raw["train"]["output_dir"] = str(Path(raw["train"]["output_dir"]).resolve())
        if "model" not in override and out:
            raw["model"] = out[-1].train.output_dir
        try:
            sub = SFTConfig.model_validate(raw)
        except ValidationError as e:
            raise SftkitError(_explain(e, f"{source} (stages[{i}], stage {override['stage']})")) from None
        if base_dir is not None:
            sub.data.datasets = [ds.resolved(base_dir) for ds in sub.data.datasets]
            if sub.eval.data and not Path(sub.eval.data).is_absolute():
                sub.eval.data = str(base_dir / sub.eval.data)
        out.append(sub)
    return out


def run_chain(cfg) -> Path:
    """Train every stage in order; return the chain's run folder."""
    import yaml

    from sftkit.train import run_stage
    from sftkit.train.run_dir import atomic_write_text, is_main_process

    stages = cfg._stage_configs or expand(cfg, None)
    root = Path(cfg.train.output_dir)
    if is_main_process():
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "config.yaml", yaml.safe_dump(cfg.model_dump(), allow_unicode=True, sort_keys=False))
        info = {"stages": [{"stage": s.stage, "method": s.method, "run": _relative(s.train.output_dir, root)}
                           for s in stages], "last": _relative(stages[-1].train.output_dir, root)}
        atomic_write_text(root / PIPELINE, json.dumps(info, indent=2))
    for i, sub in enumerate(stages):
        run = Path(sub.train.output_dir)
        if _finished(run) and not sub.train.overwrite:
            print(f"stage {i + 1}/{len(stages)} ({sub.stage}): already trained in {run}; kept", flush=True)
            continue
        print(f"stage {i + 1}/{len(stages)}: {sub.stage} ({sub.method}) from {sub.model} -> {run}", flush=True)
        run_stage(sub)
    return root


def _relative(path: str, root: Path) -> str:
    """A stage folder as pipeline.json stores it: relative to the chain's folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _finished(run: Path) -> bool:
    """A stage's run holds its finished model (an rft run: its last round's)."""
    from sftkit.train.run_dir import is_complete_final

    inner = last_stage(run)
    return is_complete_final(run) or (inner is not None and inner != run and _finished(inner))


def last_stage(folder: Path) -> Path | None:
    """The run folder of a chain's last stage (None: ``folder`` is not a chain)."""
    f = Path(folder) / PIPELINE
    if not f.is_file():
        return None
    last = Path(json.loads(f.read_text(encoding="utf-8"))["last"])
    return last if last.is_absolute() else Path(folder) / last
