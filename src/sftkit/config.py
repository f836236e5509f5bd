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
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sftkit.errors import SftkitError

BASE_MODEL = "sftkit-tiny"  # the small pretrained model shipped inside the package


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetSpec(Strict):
    """One training source: a file/folder (``path``) or a LLaMA-Factory registry entry."""

    path: str | None = None  # file or folder, relative to the config file
    registry: str | None = None  # dataset_info.json (or its folder) for `dataset`
    dataset: str | None = None  # registry entry name
    format: str | None = None  # force a source format (default: detected)
    weight: float = Field(1.0, ge=0)  # share of the mix relative to the other sources
    replace: dict[str, str] = {}  # text substitutions, e.g. {"{{name}}": "Aurora"} for identity data

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.path) == bool(self.dataset):
            raise ValueError("give either `path` or `registry` + `dataset`")
        if self.dataset and not self.registry:
            raise ValueError(f"dataset {self.dataset!r} needs `registry` (a LLaMA-Factory dataset_info.json)")
        return self


class DataConfig(Strict):
    datasets: list[DatasetSpec]  # training sources, mixed by weight
    eval_file: str | None = None  # a separate evaluation file
    val_size: float = Field(0.0, ge=0, lt=1)  # or: hold out this share of the training data for eval loss
    max_samples: int | None = None  # use at most this many training records (after mixing)
    max_length: int = Field(1024, ge=8)  # tokens per sample (and per packed row)
    overflow: Literal["truncate", "drop"] = "truncate"  # what to do with longer samples
    packing: bool = False  # bin samples into max_length rows; attention stays within each sample
    train_on_prompt: bool = False  # also learn prompt tokens
    mask_history: bool = False  # learn only the last assistant reply of multi-turn conversations
    seed: int = 42  # shuffling and splitting


class LoraConfig(Strict):
    r: int = Field(16, ge=1, validation_alias=AliasChoices("r", "rank"))  # rank (``rank:`` works too)
    alpha: int = 32  # scaling numerator (alpha / r)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | Literal["all-linear"] = "all-linear"  # module names or every linear layer
    init: Literal["default", "pissa"] = "default"  # pissa: principal singular values initialisation


class FreezeConfig(Strict):
    trainable_layers: int = Field(2, ge=0)  # the last N decoder layers train
    trainable_modules: list[str] = []  # plus parameters whose name contains any of these (e.g. lm_head)


class PromptConfig(Strict):
    num_virtual_tokens: int = Field(16, ge=1)  # learned prompt length
    encoder_hidden_size: int = 128  # p-tuning prompt encoder width
    prefix_projection: bool = True  # prefix tuning: re-parameterise with an MLP (p-tuning v2: no MLP)


class TrainArgs(Strict):
    output_dir: str = "runs/sft"  # run folder: checkpoints, metrics.jsonl, config, data report, final model
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(8, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    gradient_checkpointing: bool = False
    neftune_alpha: float | None = None  # NEFTune embedding noise
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = None  # eval loss every N steps (default: at the end)
    save_steps: int = Field(100, ge=1)  # checkpoint every N steps
    save_total_limit: int = Field(2, ge=1)  # keep the last K checkpoints
    resume: str | None = None  # "auto": continue from the last complete checkpoint; or a checkpoint path
    overwrite: bool = False  # start over in an output_dir that holds checkpoints of an earlier run (deletes them)
    seed: int = 42
    tensorboard: bool = False
    num_workers: int = 0  # dataloader workers


class EvalConfig(Strict):
    """Generation metrics on held-out data: during training (every_steps) and for `sftkit eval --config`."""

    data: str | None = None  # data file with reference replies (relative to the config file)
    format: str | None = None
    every_steps: int | None = None  # during training: generate and score every N steps
    max_samples: int = Field(32, ge=1)  # records scored during training (all for `sftkit eval` unless set)
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(16, ge=1)


class SFTConfig(Strict):
    """A whole fine-tuning run."""

    model: str = BASE_MODEL  # Hugging Face id, local folder, or sftkit-tiny (shipped)
    template: str | None = None  # built-in chat template; None = the tokenizer's own chat_template
    trust_remote_code: bool = False
    method: str = "lora"  # full, freeze, lora, dora, pissa, qlora, prefix, prompt, p_tuning, p_tuning_v2
    lora: LoraConfig = LoraConfig()
    freeze: FreezeConfig = FreezeConfig()
    prompt: PromptConfig = PromptConfig()
    data: DataConfig
    train: TrainArgs = TrainArgs()
    eval: EvalConfig = EvalConfig()

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
        if self.data.packing and self.method in ("prefix", "prompt", "p_tuning", "p_tuning_v2"):
            raise ValueError(f"data.packing does not work with method {self.method!r} (virtual tokens are "
                             "prepended per sequence); set data.packing: false")
        if self.eval.every_steps and not self.eval.data:
            raise ValueError("eval.every_steps needs eval.data (a file with reference replies)")
        if self.method == "pissa" and self.lora.init == "default":
            self.lora.init = "pissa"
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
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> SFTConfig:
    """Read a YAML config (or a dict), apply overrides, validate; relative data paths resolve from the file."""
    source = str(path) if path else "config"
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise SftkitError(f"{path}: config not found") from None
        except yaml.YAMLError as e:
            raise SftkitError(f"{path}: not valid YAML ({e})") from None
    raw = apply_overrides(copy.deepcopy(raw or {}), overrides or [])
    try:
        cfg = SFTConfig.model_validate(raw)
    except ValidationError as e:
        raise SftkitError(_explain(e, source)) from None
    if path is not None:
        base = Path(path).resolve().parent
        for ds in cfg.data.datasets:
            for key in ("path", "registry"):
                value = getattr(ds, key)
                if value and not Path(value).is_absolute():
                    setattr(ds, key, str(base / value))
        if cfg.data.eval_file and not Path(cfg.data.eval_file).is_absolute():
            cfg.data.eval_file = str(base / cfg.data.eval_file)
        if cfg.eval.data and not Path(cfg.eval.data).is_absolute():
            cfg.eval.data = str(base / cfg.eval.data)
    return cfg


def load_eval_config(path: str | Path) -> tuple[EvalConfig, str]:
    """The ``eval:`` section and model of a train config, or of an eval-only config (``model`` + ``eval``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SftkitError(f"{path}: config not found") from None
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
