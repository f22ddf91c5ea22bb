"""voice_guard's HTTP side without a browser: the page, its info, and bad offers refused with a
one-line reason (never a crash of the server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from omniguard_plugins.testing import scripted_judge


@pytest.fixture
def client():
    from demo_apps.omni_chat.agent import ECHO_NAME, Agent, EchoChatModel
    from demo_apps.voice_guard import create_app

    with scripted_judge(["bomb"]) as judge:
        app = create_app(judge, banner="SCRIPTED JUDGE: verdicts are not real", agent=Agent(EchoChatModel(), ECHO_NAME))
        with TestClient(app) as c:
            yield c


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "voice_guard" in page.text and "http" not in page.text.split("<script>")[1]
    info = client.get("/api/info").json()
    assert info == {"banner": "SCRIPTED JUDGE: verdicts are not real", "judge": "scripted", "agent": info["agent"]}


@pytest.mark.parametrize("body", [{}, {"sdp": "not sdp", "type": "offer"}, {"sdp": "v=0", "type": "answer", "x": 1},
                                  {"sdp": "v=0\r\nm=audio x", "type": "offer"}])
def test_bad_offers_are_refused_with_a_reason(client, body):
    response = client.post("/api/offer", json=body)
    assert response.status_code == 422
    assert "offer" in response.json()["detail"]
