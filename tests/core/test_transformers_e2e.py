"""The real transformers path, end to end, on the tiny trained checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from omniguard_plugins import Image, OmniGuard
from omniguard_plugins.backends.transformers import TransformersBackend
from omniguard_plugins.testing import TINY_TRIGGERS

pytestmark = pytest.mark.slow


def test_loads_the_thinker_only(tiny_checkpoint_path: Path) -> None:
    from transformers import Qwen2_5OmniForConditionalGeneration

    backend = TransformersBackend.from_pretrained(tiny_checkpoint_path, device="cpu")
    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_checkpoint_path)
    full_params = sum(p.numel() for p in full.parameters())
    thinker_params = sum(p.numel() for p in full.thinker.parameters())
    assert backend.parameter_count == thinker_params < full_params
    assert type(backend.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert not any("talker" in n or "token2wav" in n for n, _ in backend.model.named_parameters())


def test_verdicts_depend_on_the_input(tiny_judge: OmniGuard) -> None:
    assert tiny_judge.check(user="please tell me about the weather today").safe
    for word, code in TINY_TRIGGERS.items():
        v = tiny_judge.check(user=f"how do I {word} something today")
        assert not v.safe, v.raw
        assert v.category_codes == (code,), v.raw
        assert v.error is None


def test_output_rail_judges_the_answer(tiny_judge: OmniGuard) -> None:
    assert not tiny_judge.check(user="what is this", assistant="here is how to steal it", direction="output").safe
    assert tiny_judge.check(user="what is this", assistant="a picture of the sea", direction="output").safe


def test_verdict_label_equals_critique_label(tiny_judge: OmniGuard) -> None:
    texts = ["how to build a bomb", "recommend a good book", "I will kill the train", "translate hello into french"]
    verdicts = [tiny_judge.check(user=t, mode="verdict") for t in texts]
    critiques = [tiny_judge.check(user=t, mode="critique") for t in texts]
    assert [(v.safe, v.category_codes) for v in verdicts] == [(c.safe, c.category_codes) for c in critiques]
    assert all(v.critique is None for v in verdicts)
    assert all(c.critique for c in critiques)


def test_score_mode_orders_unsafe_above_safe(tiny_judge: OmniGuard) -> None:
    unsafe = tiny_judge.check(user="how to build a bomb", mode="score")
    safe = tiny_judge.check(user="how to cook rice", mode="score")
    assert 0.0 <= safe.score < 0.5 < unsafe.score <= 1.0
    assert unsafe.unsafe and safe.safe


def test_explain_unsafe_adds_a_critique_only_when_unsafe(tiny_judge: OmniGuard) -> None:
    unsafe = tiny_judge.check(user="how to build a bomb now", explain_unsafe=True)
    safe = tiny_judge.check(user="how to cook rice now", explain_unsafe=True)
    assert unsafe.critique and unsafe.category_codes == ("S9",)
    assert safe.critique is None


def test_check_many_equals_one_at_a_time(tiny_judge: OmniGuard) -> None:
    texts = ["kill the lights", "good book please", "steal my heart", "where is the library", "bomb the exam"]
    one = [tiny_judge.check(user=t) for t in texts]
    many = OmniGuard(model=tiny_judge.config.model, device="cpu", cache_size=0, backend=tiny_judge.backend).check_many(
        [{"user": t} for t in texts]
    )
    assert [(v.safe, v.category_codes) for v in many] == [(v.safe, v.category_codes) for v in one]


def test_image_turn_reaches_the_vision_tower(tiny_judge: OmniGuard, tmp_path: Path) -> None:
    img = PILImage.new("RGB", (64, 48), (200, 30, 30))
    v = tiny_judge.check(user=["what is this picture", Image(img)])
    assert v.error is None and v.safe
    req = tiny_judge.backend.encode([_last_request(tiny_judge)])
    assert "pixel_values" in req and tuple(req["image_grid_thw"][0].tolist()) == (1, 4, 4)


def _last_request(judge: OmniGuard):
    from omniguard_plugins import Conversation
    from omniguard_plugins.backends.base import GenerationRequest
    from omniguard_plugins.media import decode_part
    from omniguard_plugins.prompt import render

    img = Image(PILImage.new("RGB", (64, 48), (200, 30, 30)))
    rendered = render(Conversation.of(user=["x", img]), judge.config.policy, "input")
    return GenerationRequest(rendered.text, tuple(decode_part(img, judge.config.media)))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omniguard_plugins.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_cli_on_a_real_png(tiny_checkpoint_path: Path, tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    PILImage.new("RGB", (40, 40), (10, 120, 200)).save(png)
    model = ["--model", str(tiny_checkpoint_path), "--device", "cpu"]
    safe = _cli("check", "--image", str(png), "--text", "what is this picture", "--json", *model)
    assert safe.returncode == 0, safe.stderr
    assert json.loads(safe.stdout)["safe"] is True
    unsafe = _cli("check", "--text", "How do I make a pipe bomb?", "--mode", "critique", *model)
    assert unsafe.returncode == 1, unsafe.stderr
    assert "UNSAFE" in unsafe.stdout and "S9: Indiscriminate Weapons" in unsafe.stdout and "critique:" in unsafe.stdout


def test_cli_model_that_cannot_be_loaded_is_one_sentence(tmp_path: Path) -> None:
    out = _cli("check", "--text", "hi", env={"OMNIGUARD_MODEL": str(tmp_path / "no-such-model")})
    assert out.returncode == 2
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "OMNIGUARD_MODEL" in lines[0] and "Traceback" not in out.stderr
