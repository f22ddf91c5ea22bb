"""``omniguard eval --localize``'s sets and scores: the truth is where the sets say it is."""

from __future__ import annotations

import pytest

from omniguard_plugins import OmniGuard, Text
from omniguard_plugins.eval.derived import MediaMaker, espeak_available
from omniguard_plugins.eval.localize import (
    LocalizeItem,
    localize_items,
    localize_table,
    run_localize,
    score_item,
    write_localize_report,
)
from omniguard_plugins.media import MediaLimits, decode_part
from omniguard_plugins.testing import ScriptedBackend, keyword_handler
from omniguard_plugins.verdict import Evidence, Verdict
from tests.support.evidence_cases import handler


def _red(frame) -> bool:
    r, g, b = frame.reshape(-1, 3).mean(axis=0)
    return bool(r > 150 and g < 100 and b < 100)


def _judge() -> OmniGuard:
    words = keyword_handler({"bomb": "S9", "kill": "S1", "steal": "S2", "suicide": "S11"})

    def both(prompt, media):
        answer = handler(prompt, media)
        if "unsafe" in answer.split("\n")[0].lower() or "<BEGIN CONVERSATION>" not in prompt:
            return answer  # (an image-only prompt holds only the policy, whose names hold the words)
        return words(prompt, media)

    return OmniGuard(backend=ScriptedBackend(both), model="scripted", max_wait_ms=5.0)


def test_the_truth_is_where_the_items_say(tmp_path):
    sets = localize_items(per_set=3, maker=MediaMaker(tmp_path))
    for item in sets["localize_text"]:
        text = item.parts[0].text
        assert any(w in text[int(item.span[0]) : int(item.span[1])] for w in ("bomb", "steal", "kill", "suicide"))
    for item in sets["localize_images"]:
        assert item.parts[item.part].name == "unsafe_red.png"
    for item in sets["localize_video"]:
        video = decode_part(item.parts[1], MediaLimits())[0]
        start = int(item.span[0] * video.fps)
        assert _red(video.frames[start]) and not _red(video.frames[start - 1])  # red from the span's start
    if espeak_available():
        for item in sets["localize_speech"]:
            audio = decode_part(item.parts[0], MediaLimits())[0]
            assert 0 < item.span[0] < item.span[1] < audio.duration_s


def test_scores_on_scripted_verdicts(tmp_path):
    scores = {s.name: s for s in run_localize(_judge(), per_set=3, maker=MediaMaker(tmp_path))}
    for name in ("localize_images", "localize_text", "localize_video"):
        row = scores[name].row()
        assert row["unsafe_verdicts"] == 3 and row["hit_rate"] == 1.0, row
        assert row["mean_iou"] > 0.3 and 0 < row["checks_per_verdict"] <= 12
    assert scores["localize_images"].row()["mean_iou"] == 1.0
    table = localize_table(list(scores.values()))
    assert table.startswith("| set | items | unsafe verdicts | hit rate | mean IoU |")
    assert "| localize_images | 3 | 3 | 100% | 1.00 |" in table


def test_score_item():
    item = LocalizeItem("t", "localize_text", (Text("x" * 100),), part=0, span=(40, 60))
    hit = Verdict(safe=False, evidence=(Evidence(part=0, kind="text", chars=(30, 60)),))
    assert score_item(item, hit) == (True, pytest.approx(20 / 30))
    miss = Verdict(safe=False, evidence=(Evidence(part=0, kind="text", chars=(0, 10)),))
    assert score_item(item, miss) == (False, 0.0)
    image = LocalizeItem("i", "localize_images", (), part=2)
    two = Verdict(safe=False, evidence=(Evidence(part=2, kind="image"), Evidence(part=1, kind="image")))
    assert score_item(image, two) == (True, 0.5)


def test_the_report_files(tmp_path):
    table = write_localize_report(_judge(), tmp_path / "run", per_set=2, maker=MediaMaker(tmp_path / "cache"))
    assert (tmp_path / "run" / "localize.md").read_text() == table
    assert "localize_text" in (tmp_path / "run" / "localize.json").read_text()


@pytest.mark.slow
def test_on_the_tiny_checkpoint_the_text_set_is_found(tiny_judge, tmp_path):
    (score,) = run_localize(tiny_judge, ["localize_text"], per_set=3, maker=MediaMaker(tmp_path))
    row = score.row()
    assert row["unsafe_verdicts"] == 3 and row["hit_rate"] == 1.0 and row["mean_iou"] > 0.5
