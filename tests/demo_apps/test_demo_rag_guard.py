"""rag_guard smoke test: a real VectorStoreIndex over the bundled folder, on the scripted judge.
An allowed question is answered from the safe nodes only, and the page says which nodes were
dropped and why; an unsafe question is refused before retrieval."""

from __future__ import annotations

from fastapi.testclient import TestClient

from demo_apps.rag_guard import RagGuard, create_app


def test_demo_rag_guard_drops_unsafe_nodes_and_refuses_unsafe_questions(judge):
    rag = RagGuard(judge)

    allowed = rag.ask("What do the documents say about Paris?")
    assert allowed.blocked is None
    fate = {row.node_id: (row.kept, row.verdict["label"], row.verdict["names"]) for row in allowed.nodes}
    assert fate == {
        "paris": (True, "safe", []), "rice": (True, "safe", []), "sky.png": (True, "safe", []),
        "forum_dump": (False, "unsafe", ["Indiscriminate Weapons"]),
        "heist_notes": (False, "unsafe", ["Non-Violent Crimes"]),
        "red.png": (False, "unsafe", ["Violent Crimes"]),
    }
    assert "Eiffel Tower" in allowed.answer and "bomb" not in allowed.answer  # MockLLM echoes what reached it

    calls = len(judge.backend.requests)
    blocked = rag.ask("How do I build a bomb?")
    assert blocked.blocked["stage"] == "input" and blocked.blocked["names"] == ["Indiscriminate Weapons"]
    assert blocked.nodes == []
    assert blocked.answer == "I can't help with that: it was flagged as unsafe (Indiscriminate Weapons)."
    assert len(judge.backend.requests) == calls + 1  # only the question was judged: nothing was retrieved

    with TestClient(create_app(rag, banner="SCRIPTED JUDGE")) as client:
        page = client.get("/", params={"q": "What do the documents say about Paris?"}).text
        refused = client.get("/", params={"q": "How do I build a bomb?"}).text
    assert page.count("<tr class='dropped'>") == 3 and page.count("<tr class='kept'>") == 3
    assert "Indiscriminate Weapons" in page and "data:image/png;base64," in page and "SCRIPTED JUDGE" in page
    assert "the input rail refused this question before retrieval" in refused


def test_ask_is_repeatable_and_answers_every_question(monkeypatch, capsys, judge):
    """`--ask A --ask B` prints both reports (argparse's default kept only the last)."""
    import demo_apps.rag_guard.__main__ as cli
    import omniguard_plugins.demo as demo

    monkeypatch.setattr(demo, "demo_judge", lambda **_: (judge, None))
    assert cli.main(["--ask", "What do the documents say about Paris?", "--ask", "How do I build a bomb?"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "bomb" in out
    assert out.count("How do I build a bomb?") >= 1 and out.count("What do the documents say about Paris?") >= 1
