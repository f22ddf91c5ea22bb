"""The one reader of an OpenAI answer for the output rail (``openai_answers``), used by the gateway
and the LiteLLM guardrail: what a whole message and a stream of deltas become for the judge."""

from __future__ import annotations

import asyncio
import base64
import json

from omniguard_plugins import Audio, Conversation, Image, Text, Turn
from omniguard_plugins.doors import Ask, render_tool_call
from omniguard_plugins.media import wav_bytes
from omniguard_plugins.openai_answers import AnswerStream, answer_parts, has_content, openai_content
from omniguard_plugins.openai_messages import parts_from_openai
from omniguard_plugins.streaming import Window
from omniguard_plugins.testing import keyword_handler, scripted_judge
from tests.support.door_media import RED, image_part
from tests.support.upstream_app import AUDIO_RATE, pcm16


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def shape(parts) -> list[tuple[str, str]]:
    """Parts as comparable pairs (media parts compare by identity)."""
    return [(type(p).__name__, p.text if isinstance(p, Text) else p.source) for p in parts]


def test_a_whole_answer_is_read_in_order_with_every_kind():
    arguments = json.dumps({"to": "bob", "photo": image_part(RED)["image_url"]["url"]})
    message = {"role": "assistant", "reasoning_content": "I think.", "content": "Hello.", "refusal": None,
               "audio": {"id": "a", "data": b64(wav_bytes(pcm16(0.0), AUDIO_RATE)), "transcript": "Hi there."},
               "images": [image_part(RED)], "tool_calls": [{"id": "c", "type": "function",
                                                            "function": {"name": "post", "arguments": arguments}}]}
    parts = answer_parts(message)
    assert [type(p).__name__ for p in parts] == ["Text", "Text", "Text", "Audio", "Image", "Text", "Image"]
    assert [p.text for p in parts if isinstance(p, Text)][:3] == ["I think.", "Hello.", "Hi there."]
    assert shape(parts[-2:]) == shape(render_tool_call("post", arguments))  # the one rendering every door uses
    assert not has_content(answer_parts({"content": "  "})) and not answer_parts(None)


def test_pcm16_audio_is_wrapped_as_wav():
    [audio] = [p for p in answer_parts({"audio": {"data": b64(pcm16(440.0)), "transcript": ""}},
                                       audio_format="pcm16") if isinstance(p, Audio)]
    assert audio.mime_type == "audio/wav" and base64.b64decode(audio.source) == wav_bytes(pcm16(440.0), AUDIO_RATE)


def test_a_stream_holds_calls_and_audio_and_judges_them_assembled():
    reader = AnswerStream()
    pcm = pcm16(440.0, 0.05)
    data = b64(pcm)
    deltas = [{"reasoning_content": "Hmm. "}, {"content": "Sure."},
              {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "send", "arguments": ""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": '{"to": '}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": '"bob"}'}}]},
              {"audio": {"transcript": "La la."}},
              *[{"audio": {"data": data[i:i + 7]}} for i in range(0, len(data), 7)]]  # cut mid base64 quantum
    reads = [reader.read({"choices": [{"index": 0, "delta": d}]}) for d in deltas]
    assert [(text, list(media)) for text, media in reads[:2]] == [("Hmm. ", []), ("Sure.", [])]
    assert all(text is None for text, _ in reads[2:])  # held for the final check, even the call's first piece
    parts = reader.final_parts()
    assert parts[0] == Text("La la.") and shape(parts[2:]) == shape(render_tool_call("send", '{"to": "bob"}'))
    assert base64.b64decode(parts[1].source) == wav_bytes(pcm, AUDIO_RATE)


def test_the_final_check_sees_the_assembled_parts_and_bad_audio_fails_closed():
    judge = scripted_judge({"bomb": "S9"})
    try:
        reader = AnswerStream()
        reader.read({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "say",
                                                                                        "arguments": '"a bomb"'}}]}}]})
        seen = []

        async def window_judge(window: Window):
            seen.append(window.parts)
            return await judge.acheck(Ask(window.conversation(), stage="output"))

        final = Window("final", 1, 0, 0, ())
        assert not asyncio.run(reader.judge(window_judge)(final)).safe
        assert shape(seen[0]) == shape(render_tool_call("say", '"a bomb"'))
        broken = AnswerStream()
        broken.read({"choices": [{"delta": {"audio": {"data": "%%%%"}}}]})
        verdict = asyncio.run(broken.judge(window_judge)(final))
        assert not verdict.safe and verdict.error  # the decoder refuses it; on_error blocks
    finally:
        judge.close()


def test_openai_content_round_trips_what_answers_carry():
    parts = (Text("hi"), Audio(b64(wav_bytes(pcm16(0.0), AUDIO_RATE)), origin="base64"),
             Image(image_part(RED)["image_url"]["url"], origin="url"),
             Image(b64(base64.b64decode(image_part(RED)["image_url"]["url"].split(",", 1)[1])), origin="base64"))
    back = parts_from_openai(openai_content(parts))
    assert [type(p).__name__ for p in back] == ["Text", "Audio", "Image", "Image"]
    assert back[2].source == parts[2].source and back[3].source.startswith("data:image/png;base64,")
    judge = scripted_judge(keyword_handler({"bomb": "S9"}, red_images=True))
    try:
        verdict = judge.check(Ask(Conversation((Turn("user", (Text("hi"),)), Turn("assistant", back))), stage="output"))
        assert verdict.category_codes == ("S1",)  # the picture survived the trip
    finally:
        judge.close()
