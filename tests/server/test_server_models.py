"""``/v1/models`` names what really answers: the checkpoint's revision (a hash, never a path) and
whether it is the tiny test checkpoint, so an eval run through the server can say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from omniguard_plugins.judge import OmniGuard
from omniguard_plugins.server.app import create_app
from omniguard_plugins.testing import ScriptedBackend, keyword_handler


@pytest.mark.slow
def test_models_report_the_tiny_checkpoint_and_its_revision(tiny_checkpoint_path: Path) -> None:
    judge = OmniGuard(backend=ScriptedBackend(keyword_handler(["bomb"])), model=str(tiny_checkpoint_path))
    with TestClient(create_app(judge, load_on_startup=False)) as client:
        listed = client.get("/v1/models").json()["data"]
    judge.close()
    assert {m["tiny"] for m in listed} == {True}
    revisions = {m["revision"] for m in listed}
    assert len(revisions) == 1 and next(iter(revisions)).startswith("local-")
    assert all(str(tiny_checkpoint_path) not in str(m) for m in listed)  # no host path leaves the server


def test_a_model_served_elsewhere_has_no_local_revision() -> None:
    judge = OmniGuard(backend=ScriptedBackend(keyword_handler(["bomb"])), model="omniguard-7b-on-vllm")
    with TestClient(create_app(judge, load_on_startup=False)) as client:
        listed = client.get("/v1/models").json()["data"]
    judge.close()
    assert [(m["revision"], m["tiny"]) for m in listed] == [(None, False), (None, False)]
