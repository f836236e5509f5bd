"""Real-world shapes of newer OpenAI / LLaMA-Factory files: content parts, reasoning, loss_weight,
chosen_messages / rejected_messages, videos and audios, inline and remote media."""

from __future__ import annotations

import base64

import pytest

from sftkit.data.formats import detect_format
from tests.data.helpers import one, reject


def user_asst(user, assistant="A cat."):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


@pytest.fixture
def media(tmp_path):
    for name in ("a.jpg", "b.png", "c.mp4", "d.wav"):
        (tmp_path / name).write_bytes(b"\x00\x01")
    return tmp_path


def test_content_parts_become_text_with_placeholders_in_place(media):
    rec, rep = one(media, {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image_url", "image_url": {"url": "a.jpg"}},
                                     {"type": "text", "value": " with "}, {"type": "image", "image": "b.png"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Both are cats."}]}]})
    assert rep.format == "openai"
    assert rec["messages"] == user_asst("Compare <image> with <image>", "Both are cats.")
    assert rec["images"] == [str(media / "a.jpg"), str(media / "b.png")]
    assert rep.warnings.get("placeholder_added", 0) == 0


def test_video_audio_and_inline_audio_parts(media):
    wav = base64.b64encode(b"RIFF....WAVE").decode()
    rec, _ = one(media, {"messages": [
        {"role": "user", "content": [{"type": "video", "video": "c.mp4"}, {"type": "input_audio",
                                     "input_audio": {"data": wav, "format": "wav"}}, {"type": "audio", "audio": "d.wav"},
                                     {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": "A goal."}]})
    assert rec["messages"][0]["content"] == "<video><audio><audio>What happens?"
    assert rec["videos"] == [str(media / "c.mp4")]
    assert rec["audios"] == [f"data:audio/wav;base64,{wav}", str(media / "d.wav")]  # inline data kept as the entry


def test_top_level_videos_and_audios_are_checked_like_images(media):
    rec, _ = one(media, {"messages": user_asst("<video><audio>What happens?"), "videos": ["c.mp4"], "audios": ["d.wav"]})
    assert rec["videos"] == [str(media / "c.mp4")] and rec["audios"] == [str(media / "d.wav")]
    (media / "dir.mp4").mkdir()
    for videos, reason in ((["missing.mp4"], "file not found"), (["dir.mp4"], "not a regular file"),
                           (["../x.mp4"], "escapes the data folder")):
        rej = reject(media, {"messages": user_asst("<video>What happens?"), "videos": videos})
        assert rej["field"] == "videos[0]" and reason in rej["reason"]


def test_file_url_is_a_path_and_remote_urls_are_refused(media):
    rec, _ = one(media, {"messages": user_asst("<image>What?"), "images": [(media / "a.jpg").as_uri()]})
    assert rec["images"] == [str(media / "a.jpg")]
    for url in ("https://example.com/cat.jpg", "http://example.com/cat.jpg", "s3://bucket/cat.jpg"):
        rej = reject(media, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                                      {"type": "text", "text": "What?"}]},
                                          {"role": "assistant", "content": "A cat."}]})
        assert rej["field"] == "images[0]" and "remote media URL" in rej["reason"]
        assert "download it and give a local path" in rej["reason"]


def test_data_uris_are_validated(media, monkeypatch):
    good = "data:image/png;base64," + base64.b64encode(b"\x89PNG....").decode()
    rec, _ = one(media, {"messages": user_asst("<image>What?"), "images": [good]})
    assert rec["images"] == [good]
    rej = reject(media, {"messages": user_asst("<image>What?"), "images": ["data:image/png;base64,@@not base64@@"]})
    assert rej["field"] == "images[0]" and "not valid base64" in rej["reason"]
    rej = reject(media, {"messages": user_asst("<image>What?"), "images": ["data:image/png,rawtext"]})
    assert "data:<mime>;base64" in rej["reason"]
    monkeypatch.setattr("sftkit.data.validate.MAX_INLINE_MEDIA", 4)
    rej = reject(media, {"messages": user_asst("<image>What?"), "images": [good]})
    assert "larger than" in rej["reason"]


@pytest.mark.parametrize("content,field,reason", [
    ([{"type": "hologram", "text": "x"}], "messages[0].content[0].type", "unknown content part type 'hologram'"),
    ([{"text": "x"}], "messages[0].content[0].type", "needs a 'type'"),
    ([{"type": "image_url", "image_url": {"detail": "high"}}], "messages[0].content[0]", "has no path or URL"),
    ([{"type": "image_url", "image_url": 5}], "messages[0].content[0].image_url", "expected a file path or URL"),
    ([{"type": "input_audio", "input_audio": {"format": "wav"}}], "messages[0].content[0].input_audio", "needs"),
    ([{"type": "text"}], "messages[0].content[0]", "has no text"),
    ([{"type": "reasoning", "text": "hmm"}], "messages[0].content[0]", "only assistant turns carry reasoning"),
])
def test_bad_content_parts_are_rejected_with_field_and_reason(tmp_path, content, field, reason):
    rej = reject(tmp_path, {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "a"}]})
    assert rej["field"] == field and reason in rej["reason"]


def test_parts_and_a_media_list_together_are_refused(media):
    rej = reject(media, {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.jpg"},
                                                                   {"type": "text", "text": "<image>?"}]},
                                      {"role": "assistant", "content": "a"}], "images": ["b.png"]})
    assert rej["field"] == "images" and "both as content parts" in rej["reason"]


def test_reasoning_content_field_and_parts(tmp_path):
    rec, _ = one(tmp_path, {"messages": [{"role": "user", "content": "2+2?"},
                                         {"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4."}]})
    assert rec["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4."}
    rec, _ = one(tmp_path, {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "add them"}, {"type": "reasoning", "text": "it is 4"}, {"type": "text", "text": "4"}]}]})
    assert rec["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "add them\nit is 4"}
    rec, _ = one(tmp_path, {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<think>x</think>a"}]})
    assert rec["messages"][1] == {"role": "assistant", "content": "<think>x</think>a"}  # inline thinking is left as text
    rej = reject(tmp_path, {"messages": [{"role": "user", "content": "q", "reasoning_content": "r"},
                                         {"role": "assistant", "content": "a"}]})
    assert rej["field"] == "messages[0].reasoning_content" and "only assistant" in rej["reason"]


def test_loss_weight_kept_as_0_or_1(tmp_path):
    turns = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "bad", "loss_weight": 0},
             {"role": "user", "content": "q2"}, {"role": "assistant", "content": "good", "loss_weight": True},
             {"role": "user", "content": "q3"}, {"role": "assistant", "content": "ok", "loss_weight": 1.0}]
    rec, _ = one(tmp_path, {"messages": turns})
    assert [m.get("loss_weight") for m in rec["messages"]] == [None, 0, None, 1, None, 1]
    assert all(type(m["loss_weight"]) is int for m in rec["messages"] if "loss_weight" in m)
    assert "turns" not in rec["meta"]
    for bad, shown in ((0.5, "0.5"), ("yes", "string"), (2, "2"), (None, "null")):
        rej = reject(tmp_path, {"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a", "loss_weight": bad}]})
        assert rej["field"] == "messages[1].loss_weight" and "0 or 1" in rej["reason"] and shown in rej["reason"]


def test_chosen_and_rejected_messages_become_a_preference_pair(media):
    prompt = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "image", "image": "a.jpg"}, {"type": "text", "text": "What?"}]}]
    row = {"chosen_messages": [*prompt, {"role": "assistant", "content": "A cat."}],
           "rejected_messages": [*prompt, {"role": "assistant", "content": "A dog."}], "id": 3}
    assert detect_format(row) == "preference"
    rec, rep = one(media, row)
    assert rec["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>What?"}]
    assert rec["chosen"] == {"role": "assistant", "content": "A cat."}
    assert rec["rejected"] == {"role": "assistant", "content": "A dog."}
    assert rec["images"] == [str(media / "a.jpg")] and rec["meta"] == {"id": 3}


@pytest.mark.parametrize("chosen,rejected,field,reason", [
    (user_asst("q", "a"), user_asst("other q", "b"), "rejected_messages", "share the same prompt"),
    (user_asst("q", "a"), [{"role": "user", "content": "q"}], "rejected_messages", "must end with an assistant turn"),
    (user_asst("q", "a")[:1], user_asst("q", "b"), "chosen_messages", "must end with an assistant turn"),
])
def test_pair_conversations_that_do_not_fit_are_rejected(tmp_path, chosen, rejected, field, reason):
    rej = reject(tmp_path, {"chosen_messages": chosen, "rejected_messages": rejected})
    assert rej["field"] == field and reason in rej["reason"]


def test_tool_call_ids_and_names_are_kept(tmp_path):
    rec, _ = one(tmp_path, {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": "5C"},
        {"role": "assistant", "content": "5 degrees."}]})
    assert rec["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert rec["messages"][2] == {"role": "tool", "content": "5C", "tool_call_id": "call_1", "name": "weather"}
    rej = reject(tmp_path, {"messages": [{"role": "user", "content": "q", "tool_calls": [{"name": "f"}]},
                                         {"role": "assistant", "content": "a"}]})
    assert rej["field"] == "messages[0].tool_calls" and "only assistant" in rej["reason"]
