"""Evidence with scripted verdicts: which part, which characters, which seconds; and what it costs."""

from __future__ import annotations

import math

import pytest
from PIL import Image as PILImage

from omniguard_plugins import Image, Text
from omniguard_plugins.doors import Ask, summarize
from omniguard_plugins.media import DecodedImage
from omniguard_plugins.testing import ScriptedBackend, write_answer
from omniguard_plugins.verdict import Evidence
from tests.support.evidence_cases import (
    UNSAFE_SENTENCE,
    four_images,
    loud_audio,
    red_second_clip,
    scripted,
    thirty_sentences,
)


def _localized(judge, *parts, **kw):
    judge.backend.reset()
    verdict = judge.check(Ask(user=list(parts), localize=True, **kw))
    return verdict, len(judge.backend.requests)


def test_text_and_four_images_names_the_red_image_only():
    judge = scripted()
    verdict, requests = _localized(judge, "what is in these pictures?", *four_images())
    assert not verdict.safe
    assert verdict.evidence == (Evidence(part=3, kind="image", categories=("S1",)),)
    # the check, then one round: the text and each image alone
    assert requests == 1 + 5
    assert verdict.details["localize"] == {"checks": 5, "rounds": 1, "capped": False}


def test_each_round_is_one_batch():
    judge = scripted(max_wait_ms=200.0)
    text, _ = thirty_sentences()
    judge.backend.reset()
    verdict = judge.check(user=text, localize=True)
    assert judge.backend.calls == 1 + verdict.details["localize"]["rounds"]


def test_thirty_sentences_give_the_unsafe_sentence():
    judge = scripted()
    text, truth = thirty_sentences(at=17)
    verdict, requests = _localized(judge, text)
    (item,) = verdict.evidence
    assert item.part == 0 and item.kind == "text" and item.categories == ("S9",)
    assert item.chars is not None and item.chars[0] <= truth[0] and item.chars[1] >= truth[1]
    assert item.chars[1] - item.chars[0] <= 3 * len(UNSAFE_SENTENCE)
    assert text[item.chars[0] : item.chars[1]] == UNSAFE_SENTENCE
    # bisection: two checks per halving of 30 sentences
    assert requests - 1 <= 2 * math.ceil(math.log2(30))


def test_a_video_with_red_frames_from_4_to_5_s(tmp_path):
    judge = scripted()
    verdict, requests = _localized(judge, "what happens here?", red_second_clip(tmp_path))
    (item,) = verdict.evidence
    assert item.part == 1 and item.kind == "video" and item.seconds is not None
    start, end = item.seconds
    assert start <= 4.0 and end >= 5.0 and end - start <= 3.0
    # one round of parts, then halvings from 10 s down to 1 s
    assert requests - 1 <= 2 + 2 * math.ceil(math.log2(10 / 1.0)) * 2


def test_ten_seconds_of_audio_loud_from_6_to_7_s():
    judge = scripted()
    verdict, requests = _localized(judge, loud_audio())
    (item,) = verdict.evidence
    assert item.part == 0 and item.kind == "audio" and item.categories == ("S10",)
    start, end = item.seconds
    assert start <= 6.0 and end >= 7.0 and end - start <= 3.0
    assert requests - 1 <= 2 * 2 * math.ceil(math.log2(10 / 1.0))


def test_a_safe_verdict_has_no_evidence_and_costs_nothing_more():
    judge = scripted()
    verdict, requests = _localized(judge, "a nice day at the sea", *four_images(((30, 60, 200),) * 2))
    assert verdict.safe and verdict.evidence == () and "localize" not in verdict.details
    assert requests == 1


def test_without_localize_nothing_more_is_asked():
    judge = scripted()
    judge.backend.reset()
    verdict = judge.check(user=["what is in these pictures?", *four_images()])
    assert not verdict.safe and verdict.evidence == ()
    assert len(judge.backend.requests) == 1


def test_harmless_alone_unsafe_together_is_a_joint_combination():
    def handler(prompt, media):
        green = any(isinstance(m, DecodedImage) and m.image.getpixel((0, 0)) == (40, 160, 60) for m in media)
        if green and "recipe" in prompt.lower():
            return write_answer(safe=False, categories=["S2"], critique="Together they instruct a crime.")
        return write_answer(safe=True, critique="fine")

    from omniguard_plugins import OmniGuard

    judge = OmniGuard(backend=ScriptedBackend(handler), model="scripted", max_wait_ms=5.0)
    parts = ["the recipe for this", Image(PILImage.new("RGB", (32, 32), (40, 160, 60))),
             Image(PILImage.new("RGB", (32, 32), (30, 60, 200)))]
    verdict, requests = _localized(judge, *parts)
    assert {(e.part, e.joint) for e in verdict.evidence} == {(0, (1,)), (1, (0,))}
    assert verdict.evidence[0].chars == (0, len("the recipe for this"))
    # parts alone (3), the turn without each part (3); without the blue one IS the two together
    assert requests - 1 == 6


def test_the_cap_stops_narrowing_and_says_so():
    judge = scripted(localize_max_checks=4)
    text, truth = thirty_sentences(at=17)
    verdict, requests = _localized(judge, text)
    (item,) = verdict.evidence
    assert item.capped and verdict.details["localize"]["capped"] is True
    assert summarize(verdict, "input").to_json()["evidence"][0]["capped"] is True
    assert item.chars[0] <= truth[0] and item.chars[1] >= truth[1]
    assert requests - 1 <= 4


def test_localize_comes_from_the_config_env_and_yaml(tmp_path, monkeypatch):
    from omniguard_plugins.config import JudgeConfig

    monkeypatch.setenv("OMNIGUARD_LOCALIZE", "1")
    monkeypatch.setenv("OMNIGUARD_LOCALIZE_MAX_CHECKS", "7")
    assert JudgeConfig.load().localize is True and JudgeConfig.load().localize_max_checks == 7
    monkeypatch.delenv("OMNIGUARD_LOCALIZE")
    monkeypatch.delenv("OMNIGUARD_LOCALIZE_MAX_CHECKS")
    yaml = tmp_path / "judge.yaml"
    yaml.write_text("judge:\n  localize: true\n  localize_seconds: 2.5\n")
    config = JudgeConfig.load(yaml)
    assert config.localize and config.localize_limits.seconds == 2.5
    judge = scripted(localize=True)
    assert judge.check(user=["x", *four_images()]).evidence  # the judge's default
    assert not judge.check(user=["x", *four_images()], localize=False).evidence  # the call's choice wins


@pytest.mark.parametrize("setting", [{"localize_seconds": 0}, {"localize_sentences": 0}, {"localize_max_checks": 0}])
def test_settings_that_cannot_work_are_refused(setting):
    from omniguard_plugins.errors import ConfigError

    with pytest.raises(ConfigError, match="localize_"):
        scripted(**setting)


def test_check_many_and_acheck_localize_and_share_rounds():
    import asyncio

    judge = scripted()
    text, _ = thirty_sentences()
    asks = [Ask(user=["look", *four_images()], localize=True), Ask(user=text, localize=True),
            Ask(user="harmless", localize=True)]
    many = judge.check_many(asks)
    assert [len(v.evidence) for v in many] == [1, 1, 0]
    one = asyncio.run(judge.acheck(asks[0]))
    assert one.evidence == many[0].evidence


def test_the_summary_carries_evidence_out():
    judge = scripted()
    verdict = judge.check(user=["look", *four_images()], localize=True)
    data = summarize(verdict, "input").to_json()
    assert data["evidence"] == [{"part": 3, "kind": "image", "categories": ["S1"], "chars": None, "seconds": None,
                                 "joint": []}]
    assert summarize(verdict, "input").from_json(data).evidence == verdict.evidence


def test_an_output_check_localizes_the_answer_in_its_context():
    judge = scripted()
    answer = "Sure. " + UNSAFE_SENTENCE + " Have a nice day."
    judge.backend.reset()
    verdict = judge.check(user="hello", assistant=[Text("intro"), Text(answer)], localize=True)
    (item,) = verdict.evidence
    assert item.part == 1 and answer[item.chars[0] : item.chars[1]] == UNSAFE_SENTENCE
    assert all("User: hello" in r.prompt for r in judge.backend.requests)


def test_a_failed_probe_keeps_the_verdict_and_says_where_it_stopped():
    calls = {"n": 0}

    def handler(prompt, media):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("backend went away")
        return write_answer(safe=False, categories=["S9"], critique="bad")

    from omniguard_plugins import OmniGuard

    judge = OmniGuard(backend=ScriptedBackend(handler), model="scripted", max_wait_ms=5.0)
    verdict = judge.check(user=["bomb", Image(PILImage.new("RGB", (8, 8)))], localize=True)
    assert not verdict.safe and verdict.error is None
    assert "error" in verdict.details["localize"]
    assert {e.part for e in verdict.evidence} == {0, 1} and all(e.capped for e in verdict.evidence)


def test_red_frames_are_found_whatever_the_clip_starts_with(tmp_path):
    judge = scripted()
    for red_at in (0.0, 8.0):
        verdict, _ = _localized(judge, red_second_clip(tmp_path / str(red_at), red_at=red_at))
        (item,) = verdict.evidence
        assert item.seconds[0] <= red_at and item.seconds[1] >= red_at + 1.0
        assert item.seconds[1] - item.seconds[0] <= 3.0


def test_sentences_and_text_without_punctuation():
    from omniguard_plugins._localize import sentence_spans

    text = "One. Two!  Three?\nFour"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["One.", "Two!", "Three?", "Four"]
    words = " ".join(["word"] * 300)  # 1,499 characters, no punctuation: cut at spaces
    spans = sentence_spans(words)
    assert len(spans) == 5 and all(b - a <= 300 for a, b in spans)
    assert all(words[a] != " " and words[b - 1] != " " for a, b in spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(words)


def test_a_transcript_without_punctuation_is_narrowed_too():
    judge = scripted()
    words = ["hello"] * 400
    words[250] = "bomb"
    text = " ".join(words)
    verdict, _ = _localized(judge, text)
    (item,) = verdict.evidence
    assert "bomb" in text[item.chars[0] : item.chars[1]] and item.chars[1] - item.chars[0] <= 300


def test_score_mode_localizes_on_the_threshold():
    judge = scripted(mode="score")
    verdict, requests = _localized(judge, "look", *four_images())
    assert verdict.score == 1.0 and [e.part for e in verdict.evidence] == [3]
    assert all(r.mode == "score" for r in judge.backend.requests) and requests == 6


def test_a_repeated_check_is_answered_from_the_result_cache():
    judge = scripted()
    parts = ["look", *four_images()]
    first, _ = _localized(judge, *parts)
    again, requests = _localized(judge, *parts)
    assert again.evidence == first.evidence and requests == 0


def test_check_many_takes_localize_in_a_mapping_too():
    judge = scripted()
    (verdict,) = judge.check_many([{"user": ["look", *four_images()], "localize": True}])
    assert [e.part for e in verdict.evidence] == [3]
