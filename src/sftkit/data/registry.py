"""LLaMA-Factory's dataset registry (``dataset_info.json``) read as it is.

An entry's ``file_name`` (file or folder, relative to the registry), ``formatting`` (alpaca |
sharegpt), ``columns``, ``tags``, ``ranking``, ``num_samples`` and ``split`` are honoured. Entries
that live on a hub or behind a script need the network, which sftkit never uses: they fail with a
message saying so and what to do instead. A key of the wrong JSON type (``columns`` as a list,
``ranking`` as text, ...) is a one-line error naming the dataset and the key.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from sftkit.data.formats import Options
from sftkit.data.pipeline import ConvertOptions, Source
from sftkit.data.readers import expand_paths
from sftkit.errors import SftkitError
from sftkit.files import read_text
from sftkit.textutil import json_type

_NETWORK_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
_SPLIT = re.compile(r"^\s*(\w+)\s*(?:\[\s*(-?\d{0,18}%?)\s*:\s*(-?\d{0,18}%?)\s*\])?\s*$")


def load_registry(path: str | Path) -> dict:
    """Parse a dataset_info.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset_info.json"
    try:
        data = json.loads(read_text(path, "registry"))
    except json.JSONDecodeError as e:
        raise SftkitError(f"{path}: registry is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise SftkitError(f"{path}: registry must be a JSON object of dataset entries")
    return data


def registry_sources(registry: str | Path, names: list[str], opts: ConvertOptions, seed: int = 42) -> list[Source]:
    """Sources for the named registry entries (files resolved relative to the registry)."""
    reg_path = Path(registry)
    root = reg_path if reg_path.is_dir() else reg_path.parent
    data = load_registry(reg_path)
    sources = []
    for name in names:
        if name not in data:
            close = [k for k in data if name.lower() in k.lower()][:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise SftkitError(f"{reg_path}: no dataset named {name!r}{hint}")
        sources.extend(_entry_sources(name, data[name], root, opts, seed))
    return sources


def _entry_sources(name: str, entry: dict, root: Path, opts: ConvertOptions, seed: int) -> list[Source]:
    if not isinstance(entry, dict):
        raise SftkitError(f"dataset {name!r}: entry must be an object")
    remote = [k for k in _NETWORK_KEYS if entry.get(k)]
    if remote:
        where = entry[remote[0]]
        how = {"hf_hub_url": f"`huggingface-cli download {where} --repo-type dataset --local-dir DIR`",
               "ms_hub_url": f"`modelscope download --dataset {where} --local_dir DIR`"}.get(remote[0], "its hub's tool")
        parts = ", ".join(f"{k} {entry[k]!r}" for k in ("subset", "folder", "split") if entry.get(k))
        raise SftkitError(
            f"dataset {name!r} is fetched from the network ({remote[0]}: {where}) and sftkit works offline; "
            f"download it yourself (e.g. {how}{f'; the entry reads {parts} of it' if parts else ''}), "
            "then add an entry with \"file_name\" pointing at the local copy")
    if not entry.get("file_name"):
        raise SftkitError(f"dataset {name!r}: entry has no file_name")
    _check_types(name, entry)
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise SftkitError(f"dataset {name!r}: unknown formatting {formatting!r} (alpaca or sharegpt)")
    columns = dict(entry.get("columns") or {})
    fmt = formatting
    if formatting == "alpaca" and columns and set(columns) <= {"prompt", "system"} and not entry.get("ranking"):
        fmt = "text"  # LLaMA-Factory's pre-training entries map only `prompt` (e.g. c4_demo: prompt=text)
    if formatting == "sharegpt":
        columns.setdefault("messages", "conversations")
    options = Options(repairs=frozenset(opts.repairs), speaker_map=dict(opts.speaker_map), columns=columns,
                      tags=dict(entry.get("tags") or {}), ranking=bool(entry.get("ranking")), registry=True,
                      prompts=opts.prompts)
    select = _selector(name, entry.get("split", "train"), entry.get("num_samples"), seed)
    path = root / entry["file_name"]
    if not path.exists():
        raise SftkitError(f"dataset {name!r}: file_name {entry['file_name']!r} not found at {path}")
    return [Source(p, fmt, options, select, name) for p in expand_paths([path])]


def _check_types(name: str, entry: dict) -> None:
    """Refuse entry keys of the wrong JSON type with a message naming the dataset and the key."""
    for key, want in (("file_name", "a text path"), ("formatting", "text (alpaca or sharegpt)"),
                      ("split", "text such as train or train[:100]")):
        if key in entry and not isinstance(entry[key], str):
            raise SftkitError(f"dataset {name!r}: {key} must be {want}, got a JSON {json_type(entry[key])}")
    if "ranking" in entry and not isinstance(entry["ranking"], bool):
        raise SftkitError(f"dataset {name!r}: ranking must be true or false, got a JSON {json_type(entry['ranking'])}")
    for key in ("columns", "tags"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise SftkitError(f"dataset {name!r}: {key} must be an object of name -> column, "
                              f"got a JSON {json_type(value)}")
        bad = next((k for k, v in value.items() if not isinstance(v, str)), None)
        if bad is not None:
            raise SftkitError(f"dataset {name!r}: {key}.{bad} must be text, got a JSON {json_type(value[bad])}")


def _selector(name: str, split, num_samples, seed: int):
    """Return a function applying the entry's split slice and num_samples to converted items (or None)."""
    m = _SPLIT.match(str(split))
    if not m or m.group(1) != "train":
        raise SftkitError(f"dataset {name!r}: split {split!r} not available; a local file has only the 'train' "
                          "split (slices like train[:100] or train[:10%] work)")
    lo, hi = m.group(2), m.group(3)
    if num_samples is not None and (type(num_samples) is not int or num_samples < 1):
        raise SftkitError(f"dataset {name!r}: num_samples must be a positive integer, got {num_samples!r}")
    if not lo and not hi and num_samples is None:
        return None

    def select(items: list) -> list:
        n = len(items)
        start, stop = _bound(lo, n, 0), _bound(hi, n, n)
        items = items[start:stop]
        if num_samples is None:
            return items
        rng = random.Random(seed)
        if num_samples <= len(items):  # a random subset, kept in file order
            return [items[i] for i in sorted(rng.sample(range(len(items)), num_samples))]
        # LLaMA-Factory: every item once, then random extra draws with replacement
        return items + [items[rng.randrange(len(items))] for _ in range(num_samples - len(items))] if items else []

    return select


def _bound(spec: str, n: int, default: int) -> int:
    if not spec:
        return default
    value = round(n * int(spec[:-1]) / 100) if spec.endswith("%") else int(spec)
    return max(0, min(n, value if value >= 0 else n + value))
