"""Load a local tokenizer (never from the network) as a batch-encoding function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sftkit.errors import SftkitError


def load_tokenizer(path: str | Path) -> Callable[[list[str]], list[list[int]]]:
    """``tokenizer.json`` (or a folder holding one, or any local transformers tokenizer) -> encode(texts)."""
    from sftkit.models import SHIPPED

    path = SHIPPED.get(str(path), Path(path))
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file() and file.suffix == ".json":
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a plain Exception for a bad file
            raise SftkitError(f"{file}: not a tokenizers file ({e})") from None
        return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    if not path.is_dir():
        raise SftkitError(f"{path}: tokenizer not found (give a local folder or tokenizer.json; sftkit does not download)")
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise SftkitError(f"{path}: cannot load tokenizer ({e})") from None
    return lambda texts: hf(texts, add_special_tokens=False)["input_ids"]
