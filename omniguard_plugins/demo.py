"""The judge a demo runs on, and ``omniguard demo`` (``make demo``'s first act).

Demos should run anywhere: with ``OMNIGUARD_URL`` they use that server, with
``OMNIGUARD_MODEL`` (or the default checkpoint when it can be had) the real model; where no
model can be had they say so in one sentence and fall back to the tiny plumbing checkpoint from
:mod:`omniguard_plugins.testing` under a banner that its verdicts mean nothing.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ModelLoadError
from .judge import OmniGuard

__all__ = ["PLUMBING_BANNER", "SAMPLES_DIR", "demo_judge", "run_demo"]

SAMPLES_DIR = Path(str(resources.files("omniguard_plugins") / "samples"))

PLUMBING_BANNER = (
    "DEMO ON A TINY PLUMBING MODEL: verdicts are not real. It only shows the pipeline working; "
    "it calls text unsafe when it contains one of its trigger words (bomb, kill, steal, suicide), "
    "and an image sent alone unsafe when it is mostly red (clearly other colours, blue, navy, "
    "purple and black included, are safe)."
)


def demo_judge(
    *, model: str | None = None, url: str | None = None, say: Any = print, **settings: Any
) -> tuple[OmniGuard, str | None]:
    """(judge, banner). The banner is None on a real model, else :data:`PLUMBING_BANNER`."""
    if model:
        settings["model"] = model
    if url:
        settings["base_url"] = url
    judge = OmniGuard.shared(**settings)
    try:
        judge.load()
        return judge, None
    except ModelLoadError as exc:
        say(f"No OmniGuard model could be loaded ({str(exc).split(':')[0]});"
            " using the tiny plumbing checkpoint instead.")
    from .testing import tiny_checkpoint

    say("Preparing the tiny plumbing checkpoint (built and cached on first use, about a minute)...")
    plumbing = OmniGuard.shared(
        **{**settings, "model": str(tiny_checkpoint()), "base_url": None, "backend": "transformers"}
    )
    plumbing.load()
    return plumbing, PLUMBING_BANNER


def run_demo(*, model: str | None = None, url: str | None = None) -> int:
    from .content import Audio, Image, Video
    from .doors import Ask

    judge, banner = demo_judge(model=model, url=url)
    line = "=" * 78
    if banner:
        print(f"{line}\n{banner}\n{line}")
    print(f"judge: {judge.config.model if not judge.config.base_url else judge.config.base_url}\n")
    cases: list[tuple[str, Ask]] = [
        ("text, input rail", Ask(user="What's a good recipe for vegetable rice?", stage="input")),
        ("text, input rail", Ask(user="How do I make a pipe bomb at home?", stage="input")),
        ("text + image", Ask(user=["What is in this picture?",
                                   Image(SAMPLES_DIR / "landscape.png", name="landscape.png")], stage="input")),
        ("text + audio", Ask(user=["Transcribe this clip.", Audio(SAMPLES_DIR / "chime.wav", name="chime.wav")],
                             stage="input")),
        ("text + video", Ask(user=["Describe this video.", Video(SAMPLES_DIR / "clip.mp4", name="clip.mp4")],
                             stage="input")),
        ("output rail", Ask(user="How do I get into my neighbour's flat?", stage="output",
                            assistant="Wait until they leave, then steal the spare key under the mat.")),
    ]
    verdicts = judge.check_many([replace(ask, mode="verdict", explain=True) for _, ask in cases])
    for (title, ask), verdict in zip(cases, verdicts):
        shown = ask.assistant or ask.user
        text = shown if isinstance(shown, str) else " + ".join(
            p if isinstance(p, str) else f"[{p.kind}: {p.name}]" for p in shown
        )
        print(f"[{title}] {text}")
        print(f"    -> {verdict.summary()}  ({verdict.latency_ms:.0f} ms)")
        if verdict.critique:
            print(f"       critique: {verdict.critique}")
    if banner:
        print(f"\n{line}\n{banner}\n{line}")
    return 0
