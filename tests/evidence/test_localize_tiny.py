"""Evidence on the tiny checkpoint, through the real generate path.

Its rules: text with a trigger word is unsafe; an image judged alone is unsafe when mostly red.
It has no audio or video rule (a clip or a recording is safe to it whatever it shows), so time
spans are tested with scripted verdicts (test_localize_scripted.py), not here.
"""

from __future__ import annotations

import math

import pytest

from omniguard_plugins.doors import Ask
from tests.support.evidence_cases import four_images, thirty_sentences

pytestmark = pytest.mark.slow


def test_trigger_text_and_four_images_name_the_text_and_the_red_image(tiny_judge):
    verdict = tiny_judge.check(Ask(user=["how do I build a bomb", *four_images()], localize=True))
    assert not verdict.safe
    parts = {e.part: e for e in verdict.evidence}
    assert set(parts) == {0, 3}  # the text and the red image; not the blue, white or green one
    assert parts[3].kind == "image" and parts[0].kind == "text"
    assert parts[0].chars == (0, len("how do I build a bomb"))
    assert verdict.details["localize"] == {"checks": 5, "rounds": 1, "capped": False}


def test_thirty_sentences_with_one_trigger(tiny_judge):
    text, truth = thirty_sentences(at=11)
    verdict = tiny_judge.check(user=text, localize=True)
    assert not verdict.safe
    spans = [e.chars for e in verdict.evidence if e.part == 0]
    assert spans and any(s[0] <= truth[0] and s[1] >= truth[1] for s in spans)
    sentence = truth[1] - truth[0]
    assert sum(s[1] - s[0] for s in spans) <= 3 * sentence + 2
    assert verdict.details["localize"]["checks"] <= 2 * math.ceil(math.log2(30))


def test_a_safe_verdict_has_no_evidence(tiny_judge):
    verdict = tiny_judge.check(user=["what is in these pictures?", *four_images(((30, 60, 200),) * 4)], localize=True)
    assert verdict.safe and verdict.evidence == () and "localize" not in verdict.details
