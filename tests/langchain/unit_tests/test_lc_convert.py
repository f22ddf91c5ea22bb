"""Every LangChain content shape reaches the judge as the right part, or fails loudly."""

from __future__ import annotations

import base64

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import GuardViolation, OmniGuardRunnable, to_conversation

from omniguard_plugins import Audio, Image, Text, Video
from omniguard_plugins.errors import ContentError
from omniguard_plugins.media import MediaLimits, read_source


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def only_part(block):
    (turn,) = to_conversation(HumanMessage(content=[block])).turns
    (part,) = turn.parts
    return part


def raw_bytes(part) -> bytes:
    return read_source(part.source, MediaLimits(), mime_hint=part.mime_type)[0]


@pytest.fixture
def media(blue_png, wav, mp4):
    return {"image": blue_png, "audio": wav, "video": mp4}


FORMS = [
    # (id, kind, block factory taking the media bytes)
    ("image-base64", "image", lambda d: {"type": "image", "base64": b64(d), "mime_type": "image/png"}),
    ("image-data-url", "image", lambda d: {"type": "image", "url": "data:image/png;base64," + b64(d)}),
    ("audio-base64", "audio", lambda d: {"type": "audio", "base64": b64(d), "mime_type": "audio/wav"}),
    ("video-base64", "video", lambda d: {"type": "video", "base64": b64(d), "mime_type": "video/mp4"}),
    ("video-data-url", "video", lambda d: {"type": "video", "url": "data:video/mp4;base64," + b64(d)}),
    ("file-image", "image", lambda d: {"type": "file", "base64": b64(d), "mime_type": "image/png"}),
    ("file-audio", "audio", lambda d: {"type": "file", "base64": b64(d), "mime_type": "audio/wav"}),
    ("file-video-url", "video",
     lambda d: {"type": "file", "url": "data:video/mp4;base64," + b64(d), "mime_type": "video/mp4"}),
    ("file-sniffed", "image", lambda d: {"type": "file", "base64": b64(d)}),
    ("openai-image_url", "image",
     lambda d: {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(d)}}),
    ("openai-image_url-str", "image", lambda d: {"type": "image_url", "image_url": "data:image/png;base64," + b64(d)}),
    ("openai-input_audio", "audio",
     lambda d: {"type": "input_audio", "input_audio": {"data": b64(d), "format": "wav"}}),
    ("vllm-video_url", "video",
     lambda d: {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(d)}}),
    ("vllm-audio_url", "audio",
     lambda d: {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64(d)}}),
    ("explicit-non_standard-video", "video",
     lambda d: {"type": "non_standard",
                "value": {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(d)}}}),
    ("v0-image", "image",
     lambda d: {"type": "image", "source_type": "base64", "data": b64(d), "mime_type": "image/png"}),
    ("v0-audio", "audio",
     lambda d: {"type": "audio", "source_type": "base64", "data": b64(d), "mime_type": "audio/wav"}),
    ("v0-file-video", "video",
     lambda d: {"type": "file", "source_type": "base64", "data": b64(d), "mime_type": "video/mp4"}),
    ("v0-image-url", "image",
     lambda d: {"type": "image", "source_type": "url", "url": "data:image/png;base64," + b64(d)}),
]


@pytest.mark.parametrize(("kind", "make"), [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_each_block_form_becomes_the_right_part_with_the_same_bytes(media, kind, make):
    part = only_part(make(media[kind]))
    assert part.kind == kind
    assert raw_bytes(part) == media[kind]


@pytest.mark.parametrize(("kind", "make"), [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_each_block_form_reaches_the_judge_decoded(judge, media, kind, make):
    step = OmniGuardRunnable(judge=judge)
    message = HumanMessage(content=[{"type": "text", "text": "what is in this?"}, make(media[kind])])
    assert step.invoke([message]) == [message]
    seen = judge.backend.requests[-1]
    # a video with no sound track decodes to frames only; audio and images to one item each
    assert [m.kind for m in seen.media] == [kind]
    assert "what is in this?" in seen.prompt


def test_an_unsafe_image_in_any_form_blocks(judge, red_png, blue_png):
    step = OmniGuardRunnable(judge=judge)
    safe = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(blue_png)}}])
    unsafe = HumanMessage(content=[{"type": "image", "source_type": "base64", "data": b64(red_png),
                                    "mime_type": "image/png"}])
    assert step.invoke(safe) is safe
    with pytest.raises(GuardViolation) as caught:
        step.invoke(unsafe)
    assert caught.value.verdict.category_codes == ("S1",)


def test_text_blocks_plain_text_and_refusals_are_text():
    message = AIMessage(content=[
        {"type": "text", "text": "one"},
        {"type": "text-plain", "text": "two", "mime_type": "text/plain"},
        {"type": "text-plain", "base64": b64(b"three"), "mime_type": "text/plain"},
        {"type": "refusal", "refusal": "four"},
        {"type": "reasoning", "reasoning": "private thoughts are not shown to anyone"},
    ])
    (turn,) = to_conversation(message).turns
    assert turn.role == "assistant"
    assert turn.parts == (Text("one"), Text("two"), Text("three"), Text("four"))


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ({"type": "weird", "payload": 1}, "non-standard 'weird'"),
        ({"type": "non_standard", "value": {"type": "hologram"}}, "'hologram'"),
        ({"type": "image", "file_id": "file-123"}, "file id"),
        ({"type": "file", "base64": b64(b"%PDF-1.4"), "mime_type": "application/pdf"}, "application/pdf"),
        ({"type": "video_url", "video_url": {}}, "needs a url"),
    ],
)
def test_unknown_or_unreadable_blocks_are_errors_never_dropped(block, reason):
    with pytest.raises(ContentError, match=reason):
        to_conversation(HumanMessage(content=["look", block]))


def test_an_unknown_block_blocks_under_the_default_policy(judge):
    message = HumanMessage(content=["hello", {"type": "hologram", "data": "..."}])
    with pytest.raises(GuardViolation) as caught:
        OmniGuardRunnable(judge=judge).invoke([message])
    assert caught.value.verdict.error.startswith("content:")
    assert judge.backend.calls == 0  # decided without asking the model


def test_a_url_is_not_fetched_unless_allowed_and_blocks(judge):
    step = OmniGuardRunnable(judge=judge)
    message = HumanMessage(content=[{"type": "image", "url": "https://example.com/cat.png"}])
    with pytest.raises(GuardViolation) as caught:
        step.invoke(message)
    assert "media_fetch_refused" in caught.value.verdict.error


def test_chain_input_dict_text_and_media_values(red_png, wav):
    conversation = to_conversation({
        "question": "What is shown?",
        "image": b64(red_png),
        "user_audio": b64(wav),
        "attachment": "data:video/mp4;base64,AAAA",
        "top_k": 3,
        "style": None,
    })
    (turn,) = conversation.turns
    assert turn.role == "user"
    assert [type(p) for p in turn.parts] == [Text, Image, Audio, Video]
    assert turn.parts[0] == Text("What is shown?")
    assert raw_bytes(turn.parts[1]) == red_png


def test_chain_input_dict_with_history_and_messages():
    history = [HumanMessage("hi"), AIMessage("hello!")]
    conversation = to_conversation({"history": history, "question": "and now?"})
    assert [(t.role, t.text) for t in conversation.turns] == [
        ("user", "hi"), ("assistant", "hello!"), ("user", "and now?")]
    state = {"messages": [("system", "be nice"), ("human", "hey"), ("ai", "yo")]}
    assert [(t.role, t.text) for t in to_conversation(state).turns] == [("user", "hey"), ("assistant", "yo")]


def test_prompt_values_and_message_lists_skip_system_and_tool_messages():
    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{q}")])
    conversation = to_conversation(prompt.invoke({"q": "capital of France?"}))
    assert [(t.role, t.text) for t in conversation.turns] == [("user", "capital of France?")]
    messages = [SystemMessage("s"), HumanMessage("a"), ToolMessage("tool says", tool_call_id="1"), HumanMessage("b")]
    (turn,) = to_conversation(messages).turns
    assert turn.text == "a\n\nb"


def test_plain_strings_take_the_role_they_are_given():
    assert to_conversation("hello").turns[0].role == "user"
    assert to_conversation("hello", role="assistant").turns[0].role == "assistant"


def test_nothing_to_judge_is_an_error():
    with pytest.raises(ContentError, match="nothing to judge"):
        to_conversation({"top_k": 3})
