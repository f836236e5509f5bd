"""Use a trained model: chat (streaming, with tools), batch generation from a data file, export merged weights.

Every reply comes from ``sftkit.generation`` (the same function eval and training-time eval use).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from sftkit.errors import SftkitError
from sftkit.generation import Completion, GenerationOptions, TextStream, generate, stream
from sftkit.models import load_model, load_tokenizer, resolve, run_info
from sftkit.tokenize.render import Renderer


def options(base: GenerationOptions | None = None, **fields) -> GenerationOptions:
    """``base`` (or the defaults) with some fields changed, e.g. ``options(max_new_tokens=8)``."""
    return dataclasses.replace(base or GenerationOptions(), **fields)


class Chat:
    """A loaded model + tokenizer + template, ready to answer conversations."""

    def __init__(self, model: str, template: str | None = None, trust_remote_code: bool = False):
        path = resolve(model)
        info = run_info(path)
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        self.model = load_model(path, precision="auto", trust_remote_code=trust_remote_code).eval()
        self.renderer = Renderer(self.tokenizer, template or info.get("template"))

    def complete(self, conversations: list[list[dict]], tools: list[list | None] | None = None,
                 opts: GenerationOptions | None = None, **fields) -> list[Completion]:
        """Completions for conversations (``tools``: one list of definitions or None per conversation);
        ``fields`` change single options, e.g. ``max_new_tokens=8``."""
        return generate(self.model, self.tokenizer, self.renderer, conversations, tools, options(opts, **fields))

    def generate(self, conversations: list[list[dict]], tools: list[list | None] | None = None,
                 opts: GenerationOptions | None = None, **fields) -> list[str]:
        """Reply texts only (as generated, tool-call text included)."""
        return [c.text for c in self.complete(conversations, tools, opts, **fields)]

    def stream(self, conversation: list[dict], tools: list | None = None, opts: GenerationOptions | None = None,
               **fields) -> TextStream:
        """Iterate for the reply piece by piece; ``.completion`` holds the parsed reply afterwards."""
        return stream(self.model, self.tokenizer, self.renderer, conversation, tools, options(opts, **fields))


def load_tools(path: str) -> list[dict]:
    """Tool definitions from a JSON file: a list of objects (OpenAI ``{"type": "function", "function": ...}``
    or bare function schemas)."""
    try:
        tools = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SftkitError(f"{path}: tools file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise SftkitError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise SftkitError(f"{path}: tools must be a JSON list of objects (tool definitions)")
    from sftkit.data.formats.turns import parse_tools  # the data engine's own check and normal form
    from sftkit.errors import RecordError

    try:
        return parse_tools(tools, "tools")
    except RecordError as e:
        raise SftkitError(f"{path}: {e.field}: {e.reason}") from None


def repl(chat: Chat, system: str | None = None, prompt: str | None = None, tools: list | None = None,
         **fields) -> None:
    """Streaming chat on the terminal (``/clear`` forgets the history, ``/tool TEXT`` sends a tool result,
    ``/exit`` quits); one shot with ``prompt``. Tool calls the model makes are printed parsed."""
    base = [{"role": "system", "content": system}] if system else []
    history = list(base)
    while True:
        if prompt is not None:
            text = prompt
        else:
            try:
                text = input("you> ")
            except EOFError:
                return
            if text.strip() in ("/exit", "/quit"):
                return
            if text.strip() == "/clear":
                history = list(base)
                continue
        if text.startswith("/tool "):
            history.append({"role": "tool", "content": text[len("/tool "):]})
        else:
            history.append({"role": "user", "content": text})
        print("" if prompt is not None else "bot> ", end="", flush=True)
        reply = chat.stream(history, tools, **fields)
        for piece in reply:
            print(piece, end="", flush=True)
        print()
        for c in reply.completion.tool_calls:
            print(f"[tool call {c['id']}] {c['function']['name']}({c['function']['arguments']})", flush=True)
        history.append(reply.completion.message())
        if prompt is not None:
            return


def prompt_item(rec: dict) -> tuple[dict | None, str | None]:
    """A canonical record as generation input ``{messages, tools, reference, origin}``, or why it is none.

    A conversation ending with a user turn is replied to as it is; one ending with an assistant turn is
    replied to at that turn, whose text becomes the reference; a text record's text is the prompt."""
    if "text" in rec and "messages" not in rec:
        msgs, reference = [{"role": "user", "content": rec["text"]}], None
    else:
        msgs = list(rec["messages"])
        if "chosen" in rec:
            msgs.append(rec["chosen"])
        reference = None
        if msgs and msgs[-1]["role"] == "assistant":
            reference = msgs.pop().get("content")
    if any(rec.get(k) for k in ("images", "videos", "audios")):
        return None, "media in a text-only run"
    if not msgs or msgs[-1]["role"] not in ("user", "tool"):
        return None, "the conversation must end with a user turn to reply to"
    ref = (rec.get("meta") or {}).get("reference")
    return {"messages": msgs, "tools": rec.get("tools") or None, "origin": rec.get("origin"),
            "reference": reference if reference is not None else ref if isinstance(ref, str) else None}, None


def read_prompts(data) -> tuple[list[dict], list[dict]]:
    """Prompts of a data source (a path or a DataSource), read by the one loader in prompt mode: any format
    sftkit reads, plus prompt-only records (``{"prompt": ...}``, question / instruction + input, a turn list
    ending with a user turn). Returns (items, skipped records with where / field / reason)."""
    from sftkit.data.pipeline import Report
    from sftkit.data.source import DataSource, iter_source

    source = data if isinstance(data, DataSource) else DataSource(path=str(data))
    items, skipped = [], []
    for recs, rej in iter_source(source, Report(), purpose="prompts"):
        if rej is not None:
            where = f"{rej['source']}:{rej['line']}" if rej.get("line") is not None else str(rej["source"])
            skipped.append({"where": f"{where} (index {rej['index']})", "field": rej.get("field", ""),
                            "reason": rej["reason"]})
            continue
        for rec in recs:
            item, why = prompt_item(rec)
            o = rec.get("origin") or {}
            where = f"{o.get('file')}:{o.get('line')} (index {o.get('index')})"
            if item is None:
                skipped.append({"where": where, "field": "messages", "reason": why})
            else:
                items.append({**item, "where": where})
    return items, skipped


def generate_file(model: str, data, out: str, opts: GenerationOptions | None = None,
                  template: str | None = None) -> tuple[int, list[dict]]:
    """Reply to every prompt of a file (with the record's tools); write JSONL ``{prompt, messages, tools,
    reference, prediction, content, tool_calls, finish_reason}`` (``n`` lines per prompt).
    Returns (number written, skipped records with their reason)."""
    opts = opts or GenerationOptions()
    items, skipped = read_prompts(data)
    if not items:
        first = f"; first: {skipped[0]['where']}: {skipped[0]['reason']}" if skipped else ""
        raise SftkitError(f"{getattr(data, 'label', data)}: no prompts to reply to ({len(skipped)} record(s) "
                          f"skipped{first})")
    chat = Chat(model, template)
    done = chat.complete([it["messages"] for it in items], [it.get("tools") for it in items], opts)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for k, c in enumerate(done):
            it = items[k // opts.n]
            fh.write(json.dumps({"origin": it.get("origin"), "prompt": it["messages"][-1]["content"],
                                 "messages": it["messages"],
                                 "tools": it.get("tools"), "reference": it.get("reference"), "prediction": c.text,
                                 "content": c.content, "tool_calls": c.tool_calls, "finish_reason": c.finish_reason},
                                ensure_ascii=False) + "\n")
    return len(done), skipped


def export(run: str, out: str) -> Path:
    """Write a standalone model plain ``transformers`` loads: mergeable adapters (LoRA family, IA3) merged into the base."""
    path = resolve(run)
    info = run_info(path)
    model = load_model(path, precision="fp32")
    from sftkit.methods import method_for_model

    method = method_for_model(model)
    if method is not None:
        if not method.mergeable:
            raise SftkitError(f"method {info.get('method') or method.name!r} cannot be merged into the base weights "
                              "(it adds virtual tokens or modules); load the run folder with sftkit instead")
        model = model.merge_and_unload()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(path).save_pretrained(out_dir)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out_dir)
    return out_dir
