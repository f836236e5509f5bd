"""Load tokenizers and causal LMs from a local folder, the shipped base model, or the local HF cache.

The one module that loads them: ``load_tokenizer`` (a Hugging Face tokenizer), ``encoder`` (a fast
batch-encode function for data statistics) and ``load_model``. Never downloads (``local_files_only``);
``trust_remote_code`` stays off unless the config asks; weights load from safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from sftkit.errors import SftkitError

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED = {"sftkit-tiny": PACKAGE_DIR / "base_model"}


def resolve(name: str) -> str:
    """A model name or run folder -> the path (or hub id) transformers should load."""
    if name in SHIPPED:
        path = SHIPPED[name]
        if not (path / "config.json").exists():
            raise SftkitError(f"the shipped base model is missing at {path}; rebuild it with scripts/build_base_model.py")
        return str(path)
    p = Path(name)
    if any((p / "final" / f).exists() for f in ("config.json", "adapter_config.json", "bottleneck.json")):
        return str(p / "final")  # a run folder
    if (p / "pipeline.json").is_file():  # a chain of stages: its last stage's model
        from sftkit.train.chain import last_stage

        return resolve(str(last_stage(p)))
    return name


def run_info(path: str) -> dict:
    """sftkit.json written next to a trained model: base model, method, template."""
    f = Path(path) / "sftkit.json"
    return json.loads(f.read_text()) if f.exists() else {}


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """A fast tokenizer from a local folder or cache (padding side right for training)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = resolve(name)
    info = run_info(path)
    if info.get("base_model") and not (Path(path) / "tokenizer.json").exists():
        path = resolve(info["base_model"])
    try:
        if (Path(path) / "tokenizer.json").exists():
            tok = PreTrainedTokenizerFast.from_pretrained(path)  # exactly this tokenizer.json, no re-splitting
        else:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise SftkitError(f"cannot load tokenizer {name!r} offline ({e}); give a local folder") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # a tokenizer.json saved while padding was switched on (older sftkit after batched generation) would
    # pad every later encoding: sftkit pads in its collators, so the backend never pads or truncates
    tok.padding_side = "right"
    if getattr(tok, "backend_tokenizer", None) is not None:
        tok.backend_tokenizer.no_padding()
        tok.backend_tokenizer.no_truncation()
    return tok


def plain_backend(tokenizer):
    """A private copy of a fast tokenizer's Rust backend with padding and truncation off, whatever state the
    shared tokenizer is in (ids exactly as training renders them)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def encoder(path: str | Path) -> Callable[[list[str]], list[list[int]]]:
    """``tokenizer.json`` (or a folder holding one, or any local transformers tokenizer) -> encode(texts),
    without special tokens: the fast batch encoder the data statistics use."""
    path = SHIPPED.get(str(path), Path(path))
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file() and file.suffix == ".json":
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a plain Exception for a bad file
            raise SftkitError(f"{file}: not a tokenizers file ({e})") from None
        tok.no_padding()
        tok.no_truncation()
        return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    if not path.is_dir():
        raise SftkitError(f"{path}: tokenizer not found (give a local folder or tokenizer.json; sftkit does not download)")
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise SftkitError(f"{path}: cannot load tokenizer ({e})") from None
    return lambda texts: hf(texts, add_special_tokens=False)["input_ids"]


def default_dtype(precision: str = "auto") -> torch.dtype:
    """fp32 on CPU; bf16 on a GPU that supports it (``auto``), or what ``precision`` says."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _is_adapter_run(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_model(name: str, *, precision: str = "auto", quantize: bool = False, trust_remote_code: bool = False):
    """A causal LM (a trained adapter is loaded on its base model)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar only clutters chat and eval output
    path = resolve(name)
    dtype = default_dtype(precision)
    kwargs = {"dtype": dtype, "local_files_only": True, "trust_remote_code": trust_remote_code,
              "use_safetensors": True}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    try:
        from sftkit.methods.adapter import is_adapter_folder, load_adapter_weights

        if is_adapter_folder(path):  # bottleneck adapters (sftkit's own): the base, then the adapter weights
            base = run_info(path).get("base_model")
            if not base:
                raise SftkitError(f"{path}: bottleneck adapter without sftkit.json naming its base model")
            model = AutoModelForCausalLM.from_pretrained(resolve(base), **kwargs)
            return load_adapter_weights(model, path)
        if (Path(path) / "adapter_config.json").exists():
            from peft import PeftModel

            base = run_info(path).get("base_model") or json.loads((Path(path) / "adapter_config.json").read_text())[
                "base_model_name_or_path"]
            if _is_adapter_run(resolve(base)):  # an adapter trained on a merged earlier stage (SFT, then DPO)
                model = load_model(base, precision=precision, quantize=quantize,
                                   trust_remote_code=trust_remote_code).merge_and_unload()
            else:
                model = AutoModelForCausalLM.from_pretrained(resolve(base), **kwargs)
            return PeftModel.from_pretrained(model, path)
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise SftkitError(f"cannot load model {name!r} offline ({e}); give a local folder") from None
