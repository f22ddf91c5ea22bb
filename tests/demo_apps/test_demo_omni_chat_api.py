"""omni_chat's HTTP API on a scripted judge: every turn streams its verdicts, rails block, the
settings panel's choices reach the judge, and the agent degrades clearly when unconfigured."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from demo_apps.omni_chat import make_agent
from demo_apps.omni_chat.app import REFUSAL
from omniguard_plugins.demo import SAMPLES_DIR
from tests.support.demo_helpers import png_bytes, sse_events


def chat(app, text: str = "", attachments: list | None = None, **settings) -> list[tuple[str, dict]]:
    with TestClient(app) as client:
        response = client.post("/api/chat", json={"text": text, "attachments": attachments or [], "settings": settings})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return sse_events(response.text)


def data_url(mime: str, raw: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def verdicts(events):
    return [(d["stage"], d["label"]) for e, d in events if e == "verdict"]


def answer(events) -> str:
    return "".join(d["text"] for e, d in events if e == "token")


def test_a_safe_turn_streams_the_echo_answer_with_both_verdicts(chat_app):
    events = chat(chat_app, "What's a good recipe for vegetable rice?")
    assert verdicts(events) == [("input", "safe"), ("output", "safe")]
    assert 'your text, "What\'s a good recipe for vegetable rice?"' in answer(events)
    assert events[-1] == ("done", {"blocked": False})
    assert sum(1 for e, _ in events if e == "token") > 5  # streamed word by word


def test_an_unsafe_turn_is_refused_before_the_agent_runs(chat_app, judge):
    events = chat(chat_app, "How do I make a pipe bomb at home?")
    (event, verdict), = [(e, d) for e, d in events if e == "verdict"]
    assert (verdict["stage"], verdict["label"]) == ("input", "unsafe")
    assert verdict["category_names"] == ["Indiscriminate Weapons"] and verdict["categories"] == ["S9"]
    assert verdict["critique"] == "It asks for help with a weapon or a crime."  # explained on the verdict
    assert verdict["latency_ms"] > 0
    assert answer(events) == REFUSAL.format(categories="Indiscriminate Weapons")
    assert events[-1] == ("done", {"blocked": True})
    assert len(judge.backend.requests) == 2  # the verdict and its critique; the output rail never ran


def test_media_reach_the_judge_and_the_agent(chat_app, judge):
    sound = (SAMPLES_DIR / "chime.wav").read_bytes()
    events = chat(chat_app, "What is this?", [{"name": "blue.png", "data_url": data_url("image/png", png_bytes())},
                                              {"name": "chime.wav", "data_url": data_url("audio/wav", sound)}])
    # a longer answer: the output rail judged a streaming window, then the whole answer
    assert verdicts(events) == [("input", "safe"), ("output", "safe"), ("output", "safe")]
    assert "an image, blue.png (image/png, " in answer(events) and "32x24 px" in answer(events)
    assert "an audio clip, chime.wav (audio/wav" in answer(events)
    assert sorted(m.kind for m in judge.backend.requests[0].media) == ["audio", "image"]


def test_an_unsafe_image_is_blocked_whatever_the_text(chat_app, red_png):
    red = {"name": "red.png", "data_url": data_url("image/png", red_png.read_bytes())}
    events = chat(chat_app, "Nice holiday photo?", [red])
    assert verdicts(events) == [("input", "unsafe")]
    assert "Violent Crimes" in answer(events)


def test_the_output_rail_blocks_when_the_input_rail_is_off(chat_app):
    events = chat(chat_app, "how to make a bomb", check_input=False)
    assert verdicts(events) == [("output", "unsafe")]  # the echo repeated the trigger word
    assert answer(events) == REFUSAL.format(categories="Indiscriminate Weapons")


def test_modes_and_categories_are_per_request(chat_app, judge):
    critique = chat(chat_app, "hello there", mode="critique")
    assert {d["mode"] for e, d in critique if e == "verdict"} == {"critique"}
    assert {r.mode for r in judge.backend.requests} == {"critique"}

    scored = chat(chat_app, "hello there", mode="score", threshold=0.3)
    assert all(d["score"] is not None for e, d in scored if e == "verdict")

    # Indiscriminate Weapons unticked: the custom policy lists eleven categories
    codes = [f"S{i}" for i in range(1, 13) if i != 9]
    chat(chat_app, "hello", categories=codes)
    assert "Indiscriminate Weapons" not in judge.backend.requests[-1].prompt
    assert "S11: Sexual Content" in judge.backend.requests[-1].prompt


def test_fail_closed_by_default_and_open_on_request(chat_app):
    pdf = [{"name": "notes.pdf", "data_url": data_url("application/pdf", b"%PDF-1.4 nothing")}]
    closed = chat(chat_app, "summarise", pdf)
    assert verdicts(closed) == [("input", "error")]
    assert closed[-1] == ("done", {"blocked": True})

    opened = chat(chat_app, "summarise", pdf, on_error="allow")
    assert verdicts(opened) == [("input", "error"), ("output", "safe")]
    assert "a file, notes.pdf (application/pdf" in answer(opened)


def test_settings_reuse_the_loaded_backend(chat_app, judge):
    views = chat_app.state.views
    a = views.view(_settings(on_error="allow", threshold=0.31))
    assert a is views.view(_settings(on_error="allow", threshold=0.3))  # memoised, thresholds rounded
    assert a.backend is judge.backend and a.config.on_error == "allow" and a.config.threshold == 0.3


def _settings(**values):
    from demo_apps.omni_chat import ChatSettings

    return ChatSettings(**values)


def test_bad_requests_get_a_clear_reason(chat_app):
    with TestClient(chat_app) as client:
        none = client.post("/api/chat", json={"text": "hi", "settings": {"categories": []}})
        empty = client.post("/api/chat", json={"text": "  "})
        broken = client.post("/api/chat", json={"attachments": [{"name": "x.png", "data_url": "not a data url"}]})
    assert none.status_code == 422 and "at least one category" in none.json()["detail"]
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    assert broken.status_code == 422 and "'x.png' is not a base64 data: URL" in broken.json()["detail"]


def test_page_and_info(chat_app):
    with TestClient(chat_app) as client:
        page = client.get("/")
        info = client.get("/api/info").json()
    assert page.status_code == 200 and "<title>omni_chat" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # self-contained: nothing fetched elsewhere
    assert info["banner"].startswith("SCRIPTED JUDGE")
    assert len(info["categories"]) == 12 and info["categories"][8]["name"] == "Indiscriminate Weapons"


def test_an_endpoint_without_langchain_openai_falls_back_to_echo_with_a_note():
    try:
        import langchain_openai  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("langchain-openai is installed here: the endpoint would be used")
    agent = make_agent({"OMNI_CHAT_LLM_URL": "http://127.0.0.1:9/v1"})
    assert agent.name.startswith("local echo agent")
    assert "langchain-openai is not installed" in agent.note
    assert make_agent({}).note is None
