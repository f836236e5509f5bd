"""Chain of thought: ``problem``, ``reasoning_steps``, ``final_answer``.

The reply holds the steps in order, then the final answer (``#### answer``, the GSM8K convention the
evaluator reads); the final answer also goes to meta.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_list, get_text, json_type, register, text
from sftkit.data.formats.sharegpt import finish
from sftkit.errors import RecordError

_STEP_KEYS = ("content", "text", "step_text", "explanation", "description", "reasoning", "step")


def _step(step, where: str, ctx: Ctx) -> str:
    if isinstance(step, dict):
        key = next((k for k in _STEP_KEYS if isinstance(step.get(k), str)), None)
        if key is None:
            raise RecordError(where, f"step object has no text field (one of {', '.join(_STEP_KEYS)})")
        return step[key]
    if isinstance(step, list):
        raise RecordError(where, f"expected text, got a JSON {json_type(step)}")
    return text(step, where, ctx)


@register("cot", detect=lambda r: "reasoning_steps" in r or ("problem" in r and "final_answer" in r), priority=24)
def convert_cot(raw: dict, ctx: Ctx) -> dict:
    """Problem -> numbered reasoning steps, then the final answer."""
    problem = get_text(raw, "problem", ctx)
    steps = [_step(s, f"reasoning_steps[{i}]", ctx) for i, s in enumerate(get_list(raw, "reasoning_steps"))]
    final = get_text(raw, "final_answer", ctx)
    reply = "\n".join([*steps, f"#### {final}"])
    messages = [{"role": "user", "content": problem}, {"role": "assistant", "content": reply}]
    return finish(raw, ctx, messages, {"problem", "reasoning_steps", "final_answer"}, {"final_answer": final})
