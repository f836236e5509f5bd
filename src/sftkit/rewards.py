"""The one rewards registry: verifiable rewards for the RL stages (grpo, rloo), rejection sampling (rft)
and the RL demo.

A reward is ``fn(completions, records, **options) -> list[float]``: ``completions`` are reply texts,
``records`` the canonical record behind each one (same length; ``meta.final_answer``, ``meta.difficulty``
... live there), one finite float per completion. The config names rewards in ``rl.rewards``
(:class:`sftkit.config_rl.RewardSpec`): a registered name below, or a user function given as
``package.module:function``, imported only because the config says so (never from data).

Answers are judged exactly as ``sftkit eval`` judges them (``sftkit.eval.answers``): the same extraction
from the reply and the same numeric compare against the record's final answer, so a reward of 1 and an
eval "correct" are the same event.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass

from sftkit.config_rl import RewardSpec
from sftkit.errors import SftkitError
from sftkit.eval.answers import answers_match, extract_answer, is_numeric, reference_answer


@dataclass(frozen=True)
class Reward:
    """A registered reward: its config name, the function and a one-line description."""

    name: str
    fn: Callable
    doc: str


REWARDS: dict[str, Reward] = {}


def register(name: str, doc: str):
    """Decorator: add ``fn(completions, records, **options) -> list[float]`` to :data:`REWARDS` as ``name``."""

    def wrap(fn):
        REWARDS[name] = Reward(name, fn, doc)
        return fn

    return wrap


# ---------------------------------------------------------------- records: prompt, demonstration, answer


def _label(record: dict) -> str:
    """Where a record came from, for error messages (``file:line`` or ``file[index]``)."""
    o = record.get("origin") or {}
    if not o:
        return "record"
    return f"{o.get('file')}:{o['line']}" if o.get("line") else f"{o.get('file')}[{o.get('index')}]"


def split_prompt(record: dict) -> tuple[list[dict], dict | None]:
    """(the conversation up to and including its last user turn, the demonstration reply after it or None).

    The demonstration is the last assistant message after the prompt (a preference record's ``chosen``); a
    prompt-only record and a KTO record labelled undesirable have none. A record without a user turn is an
    error naming it."""
    msgs = record.get("messages") or []
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise SftkitError(f"{_label(record)}: no user turn to use as the prompt")
    prompt = msgs[: last_user + 1]
    if "chosen" in record:
        return prompt, record["chosen"]
    replies = [m for m in msgs[last_user + 1 :] if m.get("role") == "assistant"]
    if not replies or record.get("label") is False:
        return prompt, None
    return prompt, replies[-1]


def final_answer(record: dict) -> str | None:
    """The record's verified answer: ``meta.final_answer``, else an explicit marker (``#### N``, 答案：…) in
    its demonstration reply; never a bare last number. None when it has none."""
    meta = record.get("meta") or {}
    reply = ""
    if record.get("messages") and any(m.get("role") == "user" for m in record["messages"]):
        _, demo = split_prompt(record)
        reply = (demo or {}).get("content") or ""
    return reference_answer(reply if isinstance(reply, str) else "", meta)


def is_correct(completion: str, record: dict) -> bool:
    """The completion's answer equals the record's final answer (eval's extraction and numeric compare);
    False when the record has no final answer."""
    final = final_answer(record)
    return final is not None and answers_match(extract_answer(completion or ""), final)


# ---------------------------------------------------------------- built-in rewards


def _difficulty(record: dict, field: str, top: float | None, levels: list | None) -> float:
    """The record's difficulty in [0, 1]; 0 when its meta has none."""
    value = (record.get("meta") or {}).get(field)
    if value is None:
        return 0.0
    if levels:
        if value not in levels:
            raise SftkitError(
                f"{_label(record)}: meta.{field} = {value!r} is not one of difficulty_levels {levels}"
            )
        return levels.index(value) / max(1, len(levels) - 1)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SftkitError(
            f"{_label(record)}: meta.{field} = {value!r} is not a number (set difficulty_levels "
            "to rank named levels)"
        )
    d = float(value) / top if top else float(value)
    if not 0 <= d <= 1:
        raise SftkitError(
            f"{_label(record)}: meta.{field} = {value!r} is outside [0, {top or 1}] "
            "(set difficulty_max to the largest difficulty)"
        )
    return d


@register(
    "answer_match", "1 when the reply's answer equals meta.final_answer (eval's numeric compare), else 0"
)
def answer_match(
    completions: list[str],
    records: list[dict],
    difficulty_field: str = "difficulty",
    difficulty_bonus: float = 0.0,
    difficulty_max: float | None = None,
    difficulty_levels: list | None = None,
) -> list[float]:
    """1.0 for a correct answer, 0.0 otherwise (wrong, no answer, or a record without a final answer).

    Curr-ReFT's difficulty-aware variant: with ``difficulty_bonus`` b, a correct answer earns
    ``1 + b * d``, d the record's ``meta[difficulty_field]`` normalised to [0, 1]: divided by
    ``difficulty_max`` when given, else taken as already in [0, 1]; with ``difficulty_levels`` (e.g.
    ``[easy, medium, hard]``) level i of n gives i / (n - 1). A record without the field has d = 0."""
    if difficulty_max is not None and difficulty_max <= 0:
        raise SftkitError(f"difficulty_max must be positive, got {difficulty_max}")
    out = []
    for completion, record in zip(completions, records, strict=True):
        if not is_correct(completion, record):
            out.append(0.0)
        elif difficulty_bonus:
            out.append(
                1.0
                + difficulty_bonus * _difficulty(record, difficulty_field, difficulty_max, difficulty_levels)
            )
        else:
            out.append(1.0)
    return out


_ZH_MARK = re.compile(r"(?:最终答案|答案)\s*(?:是|为|[:：])\s*[:：]?\s*[^\s。；;，,]")
_STYLES = ("gsm8k", "zh", "tags")


def _gsm8k_format(text: str) -> bool:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (
        bool(lines) and (m := re.fullmatch(r"####\s*(.+)", lines[-1])) is not None and is_numeric(m.group(1))
    )


def _tags_format(text: str, open_tag: str, close_tag: str) -> bool:
    start = text.find(open_tag)
    end = text.find(close_tag, start + len(open_tag)) if start >= 0 else -1
    return end >= 0 and bool(text[end + len(close_tag) :].strip())


@register("format", "1 when the reply follows a format (#### N, 答案：…, a tag pair, or a regex), else 0")
def format_reward(
    completions: list[str],
    records: list[dict],
    style: str | None = None,
    pattern: str | None = None,
    match: str = "search",
    open: str = "<think>",
    close: str = "</think>",
) -> list[float]:
    """1.0 when the reply follows the format, else 0.0. Give ``style`` or ``pattern``:

    - ``gsm8k``: the last non-empty line is ``#### N`` with N a number;
    - ``zh``: the reply states ``答案：…`` / ``答案是…`` / ``最终答案为…`` followed by an answer;
    - ``tags``: ``open`` then, later, ``close`` (default ``<think>`` … ``</think>``), and non-blank text
      (the answer) after ``close``;
    - ``pattern``: a regex (dot matches newlines), found anywhere (``match: search``) or matching the whole
      reply (``match: fullmatch``)."""
    if (style is None) == (pattern is None):
        raise SftkitError(f"format: give exactly one of style ({', '.join(_STYLES)}) or pattern")
    if style is not None and style not in _STYLES:
        raise SftkitError(f"format: unknown style {style!r} (use {', '.join(_STYLES)})")
    if match not in ("search", "fullmatch"):
        raise SftkitError(f"format: match must be search or fullmatch, got {match!r}")
    if style == "tags" and not (open and close):
        raise SftkitError("format: style tags needs non-empty open and close tags")
    if pattern is not None:
        try:
            regex = re.compile(pattern, re.S)
        except re.error as e:
            raise SftkitError(f"format: pattern {pattern!r} is not a valid regex ({e})") from None
        check = regex.search if match == "search" else regex.fullmatch
    elif style == "gsm8k":
        check = _gsm8k_format
    elif style == "zh":
        check = _ZH_MARK.search
    else:

        def check(text):
            return _tags_format(text, open, close)

    return [1.0 if check(c or "") else 0.0 for c in completions]


@register("length", "0 up to max_chars characters, falling linearly to -1 at twice that length")
def length_penalty(completions: list[str], records: list[dict], max_chars: int = 400) -> list[float]:
    """A penalty in [-1, 0]: 0 for a reply of at most ``max_chars`` characters, then falling linearly
    to -1 at ``2 * max_chars`` characters and staying there."""
    if not isinstance(max_chars, int) or max_chars < 1:
        raise SftkitError(f"length: max_chars must be a positive whole number, got {max_chars!r}")
    return [-min(1.0, max(0, len(c or "") - max_chars) / max_chars) for c in completions]


# ---------------------------------------------------------------- loading from the config


def _resolve(spec: RewardSpec, where: str) -> tuple[Callable, bool]:
    """The function a spec names and whether it is a registered one, or a one-line error."""
    if ":" not in spec.name:
        if spec.name in REWARDS:
            return REWARDS[spec.name].fn, True
        close = difflib.get_close_matches(spec.name, list(REWARDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SftkitError(
            f"{where}.name: unknown reward {spec.name!r}{hint}; registered: {', '.join(REWARDS)}; "
            "or give a user function as package.module:function"
        )
    module_name, _, attr = spec.name.partition(":")
    if not module_name or not attr:
        raise SftkitError(f"{where}.name: {spec.name!r} is not package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any failure while importing user code is the user's to fix
        raise SftkitError(
            f"{where}.name: {spec.name!r}: module {module_name!r} does not import "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise SftkitError(f"{where}.name: {spec.name!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise SftkitError(f"{where}.name: {spec.name!r}: {attr!r} is a {type(fn).__name__}, not a function")
    return fn, False


def _check_options(fn: Callable, spec: RewardSpec, where: str) -> None:
    """The options are keyword parameters of the function, and it takes (completions, records)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: checked when called
    params = list(sig.parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        known = [p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in spec.options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise SftkitError(
                    f"{where}.options: reward {spec.name!r} has no option {key!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; its options: {', '.join(known) or 'none'}"
                )
    try:
        sig.bind([], [], **spec.options)
    except TypeError as e:
        raise SftkitError(
            f"{where}: reward {spec.name!r} cannot be called as fn(completions, records, "
            f"**options) with options {spec.options} ({e})"
        ) from None


def load_reward(
    spec: RewardSpec, where: str = "rl.rewards[0]"
) -> Callable[[list[str], list[dict]], list[float]]:
    """The reward a spec names, with its options bound; each call checks one finite float per completion.

    Raises SftkitError (naming ``where``) for an unknown name, a module that does not import, a missing or
    non-callable attribute, or options the function does not take (registered rewards also check values)."""
    fn, builtin = _resolve(spec, where)
    _check_options(fn, spec, where)
    options = dict(spec.options)
    if builtin:  # registered rewards check their option values up front, on an empty batch
        try:
            fn([], [], **options)
        except SftkitError as e:
            raise SftkitError(f"{where}.options: {e}") from None

    def reward(completions: list[str], records: list[dict]) -> list[float]:
        if len(completions) != len(records):
            raise SftkitError(
                f"reward {spec.name!r}: {len(completions)} completions but {len(records)} records"
            )
        try:
            values = fn(list(completions), list(records), **options)
        except SftkitError:
            raise
        except Exception as e:  # a bug in a user reward: one line naming it, not a traceback through trl
            first = str(e).splitlines()[0] if str(e) else ""
            raise SftkitError(f"reward {spec.name!r} raised {type(e).__name__}: {first}") from None
        if not isinstance(values, list | tuple) or len(values) != len(completions):
            got = (
                f"{len(values)} values" if isinstance(values, list | tuple) else f"a {type(values).__name__}"
            )
            raise SftkitError(
                f"reward {spec.name!r} returned {got} for {len(completions)} completions "
                "(it must return one float per completion)"
            )
        out = []
        for i, v in enumerate(values):
            if not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
                raise SftkitError(
                    f"reward {spec.name!r} returned {v!r} for completion {i} (not a finite number)"
                )
            out.append(float(v))
        return out

    reward.__name__ = reward.__qualname__ = spec.name
    reward.__doc__ = REWARDS[spec.name].doc if builtin else (fn.__doc__ or spec.name)
    return reward


def load_rewards(specs: list[RewardSpec]) -> list[tuple[str, float, Callable]]:
    """(name, weight, bound function) for each reward of ``rl.rewards``, every spec checked at load time."""
    return [(spec.name, spec.weight, load_reward(spec, f"rl.rewards[{i}]")) for i, spec in enumerate(specs)]
