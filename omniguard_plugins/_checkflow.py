"""The flow of one check (and of one raw generation), written once as a generator.

A flow renders the prompt, decodes media, *yields* the model requests it needs and receives
their results, possibly more than once (a critique for an unsafe verdict; the rounds that
localize it, see :mod:`._localize`), and returns what it made.
It knows nothing of threads, event loops, caches or ``on_error``: the runner drives it (sync or
async), and the judge decides what a failure means. Anything that goes wrong is raised as an
``OmniGuardError``; a model answer the parser cannot read comes back as a Verdict with
``error="unparseable"`` for the judge to decide on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._localize import Localize, localize_flow
from .answer_format import LABEL_PREFIX
from .backends.base import GenerationRequest, GenerationResult
from .content import Conversation, MediaPart
from .errors import BackendError, CorruptMedia, MediaError, OmniGuardError
from .media import DecodedAudio, DecodedMedia, MediaCache, MediaLimits, decode_part
from .policy import Policy
from .prompt import Direction, check_text_size, render
from .verdict import Mode, Verdict, parse_output

__all__ = ["CheckSpec", "FlowSettings", "Step", "check_flow", "decode_labelled", "generation_flow"]


@dataclass
class Step:
    """What a flow receives for the requests it yielded: results (or errors) in order."""

    results: list[GenerationResult | BaseException]
    cached: bool


#: a flow yields request lists, is sent Steps, and returns its product
Flow = Generator[list[GenerationRequest], Step, Any]


@dataclass(frozen=True)
class CheckSpec:
    conversation: Conversation
    direction: Direction
    mode: Mode
    policy: Policy
    explain_unsafe: bool
    #: narrow an unsafe verdict down to its evidence (see :mod:`._localize`)
    localize: bool = False


@dataclass(frozen=True)
class FlowSettings:
    """The judge settings a flow reads (so it never holds the judge)."""

    limits: MediaLimits
    media_cache: MediaCache
    max_new_tokens: int
    threshold: float
    max_text_chars: int
    #: resolution and cap of localization
    localize: Localize = Localize()


def decode_labelled(parts: Sequence[MediaPart], settings: FlowSettings) -> tuple[DecodedMedia, ...]:
    """Decode every part once (through the media cache), each error naming its part
    (``image #2 (cat.png)``); a decoder bug is a CorruptMedia, never a crash of the host app."""
    out: list[DecodedMedia] = []
    counts: Counter[str] = Counter()
    for part in parts:
        counts[part.kind] += 1
        label = f"{part.kind} #{counts[part.kind]}" + (f" ({part.name})" if part.name else "")
        try:
            out.extend(decode_part(part, settings.limits, settings.media_cache))
        except MediaError as exc:
            raise exc.for_part(label) from exc
        except OmniGuardError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CorruptMedia(f"could not decode ({type(exc).__name__}: {exc})".splitlines()[0], part=label) from exc
    return tuple(out)


def _result(result: GenerationResult | BaseException) -> GenerationResult:
    if isinstance(result, BaseException):
        if isinstance(result, OmniGuardError):
            raise result
        raise BackendError(f"backend failed: {type(result).__name__}: {result}".splitlines()[0]) from result
    return result


def _parse(result: GenerationResult | BaseException, spec: CheckSpec, threshold: float) -> Verdict:
    generated = _result(result)
    verdict = parse_output(generated.text, spec.policy, score=generated.score)
    if spec.mode != "score":
        return verdict
    score = generated.score
    if score is None:
        if verdict.error:
            return verdict
        score = 0.0 if verdict.safe else 1.0
    return verdict.with_(safe=score < threshold, score=score, error=None)


def check_flow(spec: CheckSpec, settings: FlowSettings) -> Flow:
    rendered = render(spec.conversation, spec.policy, spec.direction, max_text_chars=settings.max_text_chars)
    media = decode_labelled(rendered.media, settings)
    variants = audio_windows(media, settings.limits.audio_window_s)
    explain = spec.explain_unsafe and spec.mode == "verdict"
    requests = [
        GenerationRequest(prompt=rendered.text, media=variant, mode=spec.mode, max_new_tokens=settings.max_new_tokens,
                          prefix=LABEL_PREFIX, shared_prefix_chars=rendered.shared_prefix_chars, explain_unsafe=explain)
        for variant, _ in variants
    ]
    step = yield requests
    verdicts = [_parse(result, spec, settings.threshold) for result in step.results]
    index, verdict, details = merge_windows(verdicts, [span for _, span in variants])
    if explain and not verdict.safe and not verdict.error and not verdict.critique:
        chosen = _result(step.results[index])
        follow = GenerationRequest(
            prompt=rendered.text, media=variants[index][0], mode="critique", max_new_tokens=settings.max_new_tokens,
            prefix=chosen.text.rstrip() + "\n", shared_prefix_chars=rendered.shared_prefix_chars,
        )
        explained = yield [follow]
        extra = _parse(explained.results[0], spec, settings.threshold)
        # the label stays the verdict's; the continuation only adds the critique
        verdict = verdict.with_(critique=extra.critique, raw=extra.raw if not extra.error else verdict.raw)
    verdict = verdict.with_(cached=step.cached, details={**verdict.details, **details})
    if spec.localize and not verdict.safe and not verdict.error:
        verdict = yield from localize_flow(spec, settings, verdict)
    return verdict


def generation_flow(request: GenerationRequest, parts: Sequence[MediaPart], settings: FlowSettings) -> Flow:
    """A raw generation: the parts decoded like a check's, one request, its result."""
    check_text_size(len(request.prompt) + len(request.prefix), settings.max_text_chars)
    media = decode_labelled(parts, settings)
    step = yield [replace(request, media=request.media + media)]
    return _result(step.results[0])


def merge_windows(
    verdicts: list[Verdict], spans: list[tuple[float, float] | None]
) -> tuple[int, Verdict, dict[str, Any]]:
    """One verdict from a recording's windows: the first unsafe window's, with every unsafe
    window's categories and which windows they were."""
    index = next((i for i, v in enumerate(verdicts) if not v.safe), 0)
    verdict = verdicts[index]
    if len(verdicts) == 1:
        return index, verdict, {}
    unsafe = [i for i, v in enumerate(verdicts) if not v.safe]
    details = {"windows": len(verdicts), "unsafe_windows": unsafe,
               "window": index if unsafe else None, "window_s": spans[index] if unsafe else None}
    categories = tuple(dict.fromkeys(c for i in unsafe for c in verdicts[i].categories))
    return index, verdict.with_(categories=categories), details


def audio_windows(
    media: tuple[DecodedMedia, ...], window_s: float
) -> list[tuple[tuple[DecodedMedia, ...], tuple[float, float] | None]]:
    """Split long audio into windows; one request per window index (a long recording's
    window i goes with every other part). Short media give one variant, unchanged."""
    splits: dict[int, list[DecodedAudio]] = {}
    for idx, m in enumerate(media):
        if isinstance(m, DecodedAudio) and m.duration_s > window_s * 1.001:
            step = int(window_s * m.sample_rate)
            splits[idx] = [
                DecodedAudio(m.samples[s : s + step], m.sha256, m.sample_rate,
                             window=(s / m.sample_rate, min(len(m.samples), s + step) / m.sample_rate))
                for s in range(0, len(m.samples), step)
            ]
    if not splits:
        return [(media, None)]
    count = max(len(w) for w in splits.values())
    first = next(iter(splits.values()))
    return [
        (tuple(splits[i][min(w, len(splits[i]) - 1)] if i in splits else m for i, m in enumerate(media)),
         first[min(w, len(first) - 1)].window)
        for w in range(count)
    ]
