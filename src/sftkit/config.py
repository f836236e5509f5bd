"""Typed training config: YAML + dotted overrides (``train.learning_rate=1e-4``), checked when loaded.

Unknown or misspelled keys are errors naming the key and the closest valid one; cross-field mistakes
say what to change. Every field is documented where it is declared.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from sftkit.config_rl import SAMPLING_STAGES, STAGE_NAMES, RLConfig, Stage
from sftkit.data.source import DataSource
from sftkit.errors import SftkitError
from sftkit.files import read_text
from sftkit.generation import DEFAULT_MAX_NEW_TOKENS

BASE_MODEL = "sftkit-tiny"  # the small pretrained model shipped inside the package


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    """Training data: sources (one description each, the same one eval, mix and generate use) and rendering."""

    datasets: list[DataSource] = Field(description="training sources (files, folders or registry entries), "
                                       "mixed by `weight` (a sampling multiplier: 1 = every record once)")
    eval_file: str | DataSource | None = Field(None, description="a separate evaluation source (path or a source "
                                               "object); or use val_size")
    val_size: float = Field(0.0, ge=0, lt=1, description="hold out this share of each training source for eval loss")
    max_samples: int | None = Field(None, ge=1, description="use at most this many training records (after mixing)")
    max_length: int = Field(1024, ge=8, description="tokens per sample (and per packed row)")
    overflow: Literal["truncate", "drop"] = Field("truncate", description="what to do with longer samples "
                                                  "(both are counted in data_report.json)")
    packing: bool = Field(False, description="bin samples into max_length rows; attention stays within each sample")
    train_on_prompt: bool = Field(False, description="also learn prompt tokens")
    mask_history: bool = Field(False, description="learn only the last assistant reply of multi-turn conversations")
    seed: int = Field(42, description="shuffling, weighting and splitting")


class LoraConfig(Strict):
    """LoRA family settings (lora, dora, pissa, qlora)."""

    r: int = Field(16, ge=1, validation_alias=AliasChoices("r", "rank"),
                   description="rank of the low-rank update (`rank:` works too)")
    alpha: int = Field(32, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    targets: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt (e.g. [q_proj, v_proj]; checked against the model), "
        "or all-linear: every linear layer but lm_head")
    init: Literal["default", "pissa"] = Field("default", description="pissa: initialise from the principal "
                                              "singular vectors of each weight (method pissa sets it)")


class IA3Config(Strict):
    """IA3: learned vectors that rescale the outputs of ``targets`` (inputs, for ``feedforward`` ones)."""

    targets: list[str] = Field(["k_proj", "v_proj", "down_proj"],
                               description="modules whose activations are rescaled (checked against the model)")
    feedforward: list[str] = Field(["down_proj"], description="which of the targets are feed-forward layers "
                                   "(their input is rescaled instead of their output)")


class AdapterConfig(Strict):
    """Bottleneck adapters: h + up(act(down(h))) after decoder-layer blocks; up starts at zero."""

    size: int | None = Field(None, ge=1, description="bottleneck width (default: hidden size / reduction_factor)")
    reduction_factor: int = Field(16, ge=1, description="hidden size / bottleneck width, when size is not set")
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="activation between "
                                                                   "the down- and up-projection")
    placement: Literal["mlp", "both"] = Field("mlp", description="mlp: after each feed-forward block (Pfeiffer); "
                                              "both: after attention too (Houlsby)")


class FreezeConfig(Strict):
    """Freeze tuning: which parameters of the base model train."""

    trainable_layers: int = Field(2, ge=0, description="the last N decoder layers train")
    trainable_modules: list[str] = Field([], description="plus parameters whose name contains any of these "
                                         "(e.g. lm_head; a tied lm_head trains the shared embedding); each must "
                                         "match a parameter")


class PromptConfig(Strict):
    """Virtual-token methods (prefix, prompt, p_tuning, p_tuning_v2)."""

    num_virtual_tokens: int = Field(16, ge=1, description="learned prompt length")
    encoder_hidden_size: int = Field(128, ge=1, description="p_tuning prompt encoder / prefix MLP width")
    prefix_projection: bool = Field(True, description="prefix: re-parameterise the prefixes with an MLP "
                                    "(p_tuning_v2 never does)")


class TrainArgs(Strict):
    """Optimisation, checkpoints and the run folder."""

    output_dir: str = Field("runs/sft", description="run folder: checkpoints, metrics.jsonl, config, data report, "
                            "final model")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule after warmup")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps spent warming up")
    epochs: float = Field(1.0, gt=0, description="passes over the training rows (unless max_steps is set)")
    max_steps: int = Field(-1, description="optimizer steps to run; -1: use epochs")
    batch_size: int = Field(8, ge=1, description="rows per device per step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps (effective batch = batch_size x "
                            "grad_accum x devices)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0: off)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has "
                                                               "it, else fp32")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    neftune_alpha: float | None = Field(None, gt=0, description="NEFTune: noise added to embeddings in training")
    logging_steps: int = Field(10, ge=1, description="log loss every N steps (metrics.jsonl)")
    eval_steps: int | None = Field(None, ge=1, description="eval loss every N steps (default: at each epoch end)")
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps")
    save_total_limit: int = Field(2, ge=1, description="keep the last K complete checkpoints")
    resume: str | None = Field(None, description="auto: continue from the last complete checkpoint; or a "
                               "checkpoint path")
    overwrite: bool = Field(False, description="start over in an output_dir that holds checkpoints of an "
                            "earlier run (deletes them)")
    seed: int = Field(42, description="initialisation, dropout and data order")
    tensorboard: bool = Field(False, description="also log to TensorBoard in the run folder")
    num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop when train.best_metric has not "
                                                "improved for this many evaluations; final/ holds the best one")
    best_metric: str = Field("eval_loss", description="the logged metric early stopping watches: eval_loss "
                             "(lower is better) or e.g. eval_gen_answer_accuracy (eval.every_steps; higher is "
                             "better: every metric but losses and perplexities)")
    max_time: float | None = Field(None, gt=0, description="stop after the first step that ends this many "
                                   "seconds after training began (then save as usual)")

    @model_validator(mode="after")
    def _steps(self):
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be > 0, or -1 to use epochs (got {self.max_steps})")
        return self


class EvalConfig(Strict):
    """Generation metrics on held-out data: during training (every_steps) and for `sftkit eval --config`."""

    data: str | None = Field(None, description="data file with reference replies (relative to the config file)")
    format: str | None = Field(None, description="force the data format (default: detected)")
    every_steps: int | None = Field(None, description="during training: generate, score and log every N steps "
                                    "(needs data)")
    max_samples: int | None = Field(None, ge=1, description="score at most this many records (unset: 32 during "
                                    "training, all for `sftkit eval`)")
    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, description="longest reply in tokens (the same "
                                "default as the CLI)")
    batch_size: int = Field(16, ge=1, description="prompts generated together (left padded)")
    stop: list[str] = Field([], description="stop strings: a reply ends before the first of them")
    samples: int = Field(1, ge=1, description="answers sampled per prompt: above 1, pass@k (k = 1..samples) and "
                         "majority vote (self-consistency) are reported besides the first answer's metrics")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy; samples > 1 needs > 0)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling when temperature > 0")


class SFTConfig(Strict):
    """A whole fine-tuning run (or, with ``stages``, a chain of runs in one folder)."""

    _stage_configs: list = PrivateAttr(default_factory=list)  # the expanded `stages`, set by load_config

    stage: Stage = Field("sft", description="training stage: sft (supervised fine-tuning); dpo, kto, orpo, "
                         "simpo (preference pairs / labels); grpo, rloo (RL with rewards); rft (rejection sampling: "
                         "keep verified answers, fine-tune on them); ppo is refused (trl no longer ships it)")
    stages: list[dict] = Field([], description="run several stages in one run folder, in order (e.g. sft then "
                               "grpo: ReFT): each entry overrides keys of this config (stage, data, train, rl, ...); "
                               "each stage starts from the previous stage's model")
    model: str = Field(BASE_MODEL, description="Hugging Face id (local cache), local folder, run folder, or "
                       "sftkit-tiny (shipped)")
    template: str | None = Field(None, description="built-in chat template; none: the tokenizer's own chat_template")
    trust_remote_code: bool = Field(False, description="run model code shipped with the checkpoint")
    method: str = Field("lora", description="how the model is adapted: full, freeze, lora, dora, pissa, qlora, "
                        "ia3, adapter, prefix, prompt, p_tuning, p_tuning_v2 (see sftkit.methods)")
    lora: LoraConfig = Field(LoraConfig(), description="settings of lora, dora, pissa, qlora")
    ia3: IA3Config = Field(IA3Config(), description="settings of ia3")
    adapter: AdapterConfig = Field(AdapterConfig(), description="settings of adapter (bottleneck adapters)")
    freeze: FreezeConfig = Field(FreezeConfig(), description="settings of freeze")
    prompt: PromptConfig = Field(PromptConfig(), description="settings of prefix, prompt, p_tuning, p_tuning_v2")
    data: DataConfig = Field(description="training (and eval-loss) data")
    train: TrainArgs = Field(TrainArgs(), description="optimisation, checkpoints, run folder")
    eval: EvalConfig = Field(EvalConfig(), description="generation metrics on held-out data")
    rl: RLConfig = Field(RLConfig(), description="preference (dpo, kto, orpo, simpo) and RL (grpo, rloo, rft) "
                         "settings")

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, raw):
        """Flat configs (as LLaMA-Factory users write them) work: a top-level key that belongs to exactly one
        section (``resume``, ``packing``, ``learning_rate``, ``datasets``, ...) is moved into it."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        sections = {name: f.annotation for name, f in cls.model_fields.items()
                    if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
        for key in [k for k in raw if k not in cls.model_fields]:
            owners = [name for name, model in sections.items() if key in model.model_fields]
            if len(owners) == 1:
                section = raw.setdefault(owners[0], {})
                if isinstance(section, dict) and key not in section:
                    raw[owners[0]] = {**section, key: raw.pop(key)}
        return raw

    @model_validator(mode="after")
    def _cross_field(self):
        from sftkit.methods import METHODS

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.data.eval_file and self.data.val_size:
            raise ValueError("set data.eval_file or data.val_size, not both")
        if self.train.eval_steps and not (self.data.eval_file or self.data.val_size):
            raise ValueError("train.eval_steps needs evaluation data: set data.val_size or data.eval_file")
        method = METHODS[self.method]
        if self.stage not in method.stages:
            raise ValueError(f"method {self.method!r} does not support stage {self.stage!r} "
                             f"(it supports {', '.join(sorted(method.stages))})")
        if self.data.packing and not method.packable:
            raise ValueError(f"data.packing does not work with method {self.method!r} (virtual tokens are "
                             "prepended per sequence); set data.packing: false")
        if not set(self.ia3.feedforward) <= set(self.ia3.targets):
            raise ValueError("ia3.feedforward must be a subset of ia3.targets")
        if self.stage not in ("sft", "rft") and (self.train.early_stopping_patience or self.train.max_time):
            raise ValueError(f"train.early_stopping_patience and train.max_time apply to stages sft and rft; stage "
                             f"{self.stage!r} stops at train.max_steps / train.epochs")
        if self.train.early_stopping_patience and not (self.data.eval_file or self.data.val_size or
                                                       self.eval.every_steps):
            raise ValueError("train.early_stopping_patience needs evaluations: data.val_size or data.eval_file "
                             "(eval_loss), or eval.every_steps with eval.data (eval_gen_* metrics)")
        if self.eval.every_steps and not self.eval.data:
            raise ValueError("eval.every_steps needs eval.data (a file with reference replies)")
        if self.method == "pissa" and self.lora.init == "default":
            self.lora.init = "pissa"
        if self.stage == "ppo":
            raise ValueError("stage 'ppo': trl 1.x no longer ships a PPO trainer (no value model to build on); use "
                             "stage grpo (PPO's clipped objective with group baselines) or rloo")
        if self.eval.samples > 1 and self.eval.temperature == 0:
            raise ValueError("eval.samples > 1 needs eval.temperature > 0 (greedy decoding repeats one answer)")
        if self.stage in SAMPLING_STAGES:  # unknown names, imports and options fail now, not after loading data
            if not self.rl.rewards:
                raise ValueError(f"stage {self.stage!r} needs at least one reward in rl.rewards")
            from sftkit.rewards import load_rewards

            try:
                load_rewards(self.rl.rewards)
            except SftkitError as e:
                raise ValueError(str(e)) from None
        if self.stages:
            bad = [i for i, s in enumerate(self.stages) if not isinstance(s, dict) or "stage" not in s]
            if bad:
                raise ValueError(f"stages[{bad[0]}]: each entry is a mapping with at least `stage:` "
                                 f"(one of {', '.join(STAGE_NAMES)}) and the keys it overrides")
            nested = [i for i, s in enumerate(self.stages) if "stages" in s]
            if nested:
                raise ValueError(f"stages[{nested[0]}]: a stage cannot hold `stages` of its own")
        return self


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        if isinstance(part, int):
            continue
        ann = model.model_fields.get(part)
        if ann is None:
            break
        sub = ann.annotation
        inner = getattr(sub, "__args__", None)
        sub = next((a for a in inner or (sub,) if isinstance(a, type) and issubclass(a, BaseModel)), sub)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
    return list(model.model_fields)


def _explain(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            owners = [n for n, f in SFTConfig.model_fields.items() if len(loc) == 1 and isinstance(f.annotation, type)
                      and issubclass(f.annotation, BaseModel) and loc[0] in f.annotation.model_fields]
            if len(owners) > 1:
                lines.append(f"key {where!r} exists in several sections; put it under {' or '.join(owners)}")
                continue
            options = _fields(SFTConfig, loc[:-1])
            lines.append(f"unknown key {where!r}{_suggest(str(loc[-1]), options)}")
        elif e["type"] == "missing":
            lines.append(f"missing required key {where!r}")
        else:
            lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return f"{source}: invalid config: " + "; ".join(lines)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` overrides (values parsed as YAML) on a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise SftkitError(f"override {item!r} must look like key.path=value")
        path, _, value = item.partition("=")
        node = raw
        parts = path.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SftkitError(f"override {item!r}: {p!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:  # tags (!!python/object, !foo) and malformed values alike
            raise SftkitError(f"override {item!r}: the value is not plain YAML ({_yaml_problem(e)})") from None
    return raw


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> SFTConfig:
    """Read a YAML config (or a dict), apply overrides, validate; relative data paths resolve from the file."""
    source = str(path) if path else "config"
    if path is not None:
        try:
            raw = yaml.safe_load(read_text(path, "config")) or {}
        except yaml.YAMLError as e:
            raise SftkitError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SftkitError(f"{source}: a config is a YAML mapping (key: value lines), got {type(raw).__name__}")
    raw = apply_overrides(copy.deepcopy(raw or {}), overrides or [])
    try:
        cfg = SFTConfig.model_validate(raw)
    except ValidationError as e:
        raise SftkitError(_explain(e, source)) from None
    if path is not None:
        base = Path(path).resolve().parent
        cfg.data.datasets = [ds.resolved(base) for ds in cfg.data.datasets]
        if isinstance(cfg.data.eval_file, DataSource):
            cfg.data.eval_file = cfg.data.eval_file.resolved(base)
        elif cfg.data.eval_file and not Path(cfg.data.eval_file).is_absolute():
            cfg.data.eval_file = str(base / cfg.data.eval_file)
        if cfg.eval.data and not Path(cfg.eval.data).is_absolute():
            cfg.eval.data = str(base / cfg.eval.data)
    if cfg.stages:  # check every stage now, not after hours of the first one
        from sftkit.train.chain import expand

        cfg._stage_configs = expand(cfg, Path(path).resolve().parent if path is not None else None, source)
    return cfg


def format_fields(model: type[BaseModel] | None = None) -> str:
    """Every config field, one per line (``sftkit train --help-config``); see ``config_doc``."""
    from sftkit.config_doc import format_fields as fmt

    return fmt(model or SFTConfig)


def load_eval_config(path: str | Path) -> tuple[EvalConfig, str]:
    """The ``eval:`` section and model of a train config, or of an eval-only config (``model`` + ``eval``)."""
    try:
        raw = yaml.safe_load(read_text(path, "config")) or {}
    except yaml.YAMLError as e:
        raise SftkitError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SftkitError(f"{path}: an eval config is a mapping with `model` and `eval`")
    if "data" in raw:  # a full train config: evaluate its run folder
        cfg = load_config(path)
        return cfg.eval, cfg.train.output_dir
    unknown = set(raw) - {"model", "eval"}
    if unknown:
        raise SftkitError(f"{path}: unknown key(s) {sorted(unknown)} in an eval config (model, eval)")
    try:
        ev = EvalConfig.model_validate(raw.get("eval") or {})
    except ValidationError as e:
        raise SftkitError(_explain(e, f"{path} (eval section)")) from None
    if ev.data and not Path(ev.data).is_absolute():
        ev.data = str((Path(path).resolve().parent / ev.data).resolve())
    return ev, raw.get("model", BASE_MODEL)
