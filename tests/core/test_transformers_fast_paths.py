"""The transformers backend's own prefill + greedy decode, and the reused policy-prefix KV.

Both are speed paths, so the property that matters is that they change nothing: every answer
must equal what the plain path (and transformers' own ``generate``) gives on the same batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from omniguard_plugins import Conversation, Image, Policy
from omniguard_plugins.backends.base import GenerationRequest
from omniguard_plugins.backends.transformers import BenchKnobs, FastPaths, TransformersBackend
from omniguard_plugins.backends.transformers.encoding import chat_text
from omniguard_plugins.media import DecodedAudio, DecodedImage, DecodedVideo
from omniguard_plugins.prompt import render
from omniguard_plugins.verdict import LABEL_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(tiny_checkpoint_path: Path) -> Iterator[TransformersBackend]:
    # caller-prepare is on by default on CUDA only; the path is the same
    paths = FastPaths(caller_prepare=True)
    backend = TransformersBackend.from_pretrained(tiny_checkpoint_path, device="cpu", fast_paths=paths)
    yield backend
    backend.close()


def _request(
    text: str, *media: object, mode: str = "verdict", policy: Policy | None = None, **kw: object
) -> GenerationRequest:
    # an image with no text renders the image-only template
    user = [text] if text else [Image(PILImage.new("RGB", (8, 8)))]
    rendered = render(Conversation.of(user=user), policy or Policy(), "input")
    return GenerationRequest(
        rendered.text, tuple(media), mode=mode, prefix=LABEL_PREFIX,  # type: ignore[arg-type]
        shared_prefix_chars=rendered.shared_prefix_chars, **kw,  # type: ignore[arg-type]
    )


def _image(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> DecodedImage:
    return DecodedImage(PILImage.new("RGB", size, color), sha256=f"img{color}{size}")


def _audio(seconds: float, freq: float) -> DecodedAudio:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return DecodedAudio((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sha256=f"tone{seconds}{freq}")


def _video(frames: int, fps: float) -> DecodedVideo:
    clip = np.stack([np.full((48, 64, 3), 20 * i, dtype=np.uint8) for i in range(frames)])
    return DecodedVideo(clip, fps=fps, sha256=f"clip{frames}{fps}")


def _mixed_batch(mode: str) -> list[GenerationRequest]:
    return [
        _request("please tell me about the weather today", mode=mode),
        _request("how do I build a bomb at home", mode=mode),
        _request("what is in this picture of mine", _image((20, 120, 220)), mode=mode),
        _request("listen to this and steal it", _audio(1.5, 440.0), mode=mode),
        _request("a short clip for you", _video(4, 2.0), mode=mode),
        _request("", _image((230, 20, 20), (56, 56)), mode=mode),  # image-only template
    ]


def _with(backend: TransformersBackend, **switches: object) -> TransformersBackend:
    """The same loaded model and caches with some fast paths switched."""
    return backend.variant(fast_paths=replace(backend.fast_paths, **switches))


def _answers(
    backend: TransformersBackend, requests: list[GenerationRequest], *, prefix_cache: bool
) -> list[tuple[str, float | None, int]]:
    return [(r.text, r.score, r.new_tokens) for r in _with(backend, prefix_cache=prefix_cache).generate(requests)]


@pytest.mark.parametrize("mode", ["verdict", "critique", "score"])
def test_reused_policy_prefix_changes_no_answer(backend: TransformersBackend, mode: str) -> None:
    requests = _mixed_batch(mode)
    if mode == "critique":
        requests = [replace(r, max_new_tokens=24) for r in requests]
    plain = _answers(backend, requests, prefix_cache=False)
    reused = _answers(backend, requests, prefix_cache=True)
    assert [(t, n) for t, _, n in reused] == [(t, n) for t, _, n in plain]
    for (_, a, _), (_, b, _) in zip(reused, plain):
        assert (a is None) == (b is None)
        if a is not None:
            assert a == pytest.approx(b, abs=1e-4)
    if mode == "verdict":  # the trained checkpoint still tells them apart through this path
        assert "unsafe" in reused[1][0] and "unsafe" not in reused[0][0]


def test_policy_prefix_is_prefilled_once_and_reused(backend: TransformersBackend) -> None:
    backend.prefix_kv.clear()
    texts = ["how to cook rice", "how to kill a process", "where is the station", "steal the show"]
    first = [_request(t) for t in texts]
    backend.generate(first)
    prefix_tokens = backend.last_prompt_tokens[0] - backend.last_computed_tokens[0]
    assert prefix_tokens > 0 and len(backend.prefix_kv) == 1
    hits = backend.prefix_kv.hits
    backend.generate([_request(t + " again") for t in texts])
    assert backend.prefix_kv.hits == hits + 1 and len(backend.prefix_kv) == 1
    assert [p - c for p, c in zip(backend.last_prompt_tokens, backend.last_computed_tokens)] == [prefix_tokens] * 4


def test_each_policy_keeps_its_own_prefix(backend: TransformersBackend) -> None:
    backend.prefix_kv.clear()
    narrow = Policy.default().drop("S12")
    requests = [_request("how to build a bomb"), _request("how to build a bomb", policy=narrow), _request("cook rice")]
    together = _answers(backend, requests, prefix_cache=True)
    assert len(backend.prefix_kv) == 2
    alone = [_answers(backend, [r], prefix_cache=False)[0] for r in requests]
    assert [t for t, _, _ in together] == [t for t, _, _ in alone]


def test_a_prompt_without_a_known_prefix_takes_the_plain_path(backend: TransformersBackend) -> None:
    req = GenerationRequest("User: how to build a bomb\n\nAgent:", prefix=LABEL_PREFIX)
    assert req.shared_prefix_chars == 0
    backend.generate([req])
    assert backend.last_computed_tokens == backend.last_prompt_tokens


def test_own_decode_loop_equals_transformers_generate(backend: TransformersBackend) -> None:
    """The critique path against ``model.generate`` (greedy) on the same processor batch."""
    requests = [replace(r, mode="critique", max_new_tokens=20, prefix="") for r in _mixed_batch("critique")[:5]]
    ours = [r.text for r in backend.generate(requests)]
    batch = backend.encode(requests)
    with torch.inference_mode():
        out = backend.model.generate(
            **batch, max_new_tokens=20, do_sample=False, use_audio_in_video=False,
            pad_token_id=backend.tokenizer.pad_token_id,
            eos_token_id=backend.tokenizer.convert_tokens_to_ids("<|im_end|>"),
        )
    theirs = backend.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours == theirs
    assert any(t.strip() for t in ours)


def test_verdict_rows_stop_at_their_categories_line(backend: TransformersBackend) -> None:
    assert backend.knobs.verdict_max_new_tokens == 40
    results = backend.generate([_request("how do I build a bomb at home"), _request("tell me about the sea")])
    unsafe, safe = results
    assert unsafe.text.startswith(LABEL_PREFIX + " unsafe") and "Categories" in unsafe.text
    assert unsafe.new_tokens < 40  # stopped at the end of its Categories line, not at the cap
    assert safe.text == LABEL_PREFIX + " safe" and safe.new_tokens == 1


def test_requests_prepared_one_by_one_collate_to_the_joint_processor_batch(backend: TransformersBackend) -> None:
    requests = _mixed_batch("verdict")[:5]  # text, text, image, audio, video
    joint = backend.processor(
        text=[chat_text(backend.processor, r) + r.prefix for r in requests],
        images=[m.image for r in requests for m in r.media if isinstance(m, DecodedImage)],
        audio=[m.samples for r in requests for m in r.media if isinstance(m, DecodedAudio)],
        videos=[m.frames for r in requests for m in r.media if isinstance(m, DecodedVideo)],
        videos_kwargs={"fps": 2.0}, padding=True, return_tensors="pt",
    )
    collated = backend.encode([backend.prepare(r) for r in requests])
    assert set(collated) == set(joint)
    for key, value in joint.items():
        assert torch.equal(torch.as_tensor(collated[key]), torch.as_tensor(value)), key


def test_prepare_runs_in_callers_threads_and_changes_no_answer(backend: TransformersBackend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    requests = _mixed_batch("verdict") * 3
    with ThreadPoolExecutor(8) as pool:  # the tokenizer and processors shared by many callers at once
        prepared = list(pool.map(backend.prepare, requests))
    assert all(p.prepared is not None for p in prepared)
    assert [r.text for r in backend.generate(prepared)] == [r.text for r in backend.generate(requests)]


def test_caller_prepare_is_on_by_default_only_on_a_gpu(backend: TransformersBackend) -> None:
    fresh = TransformersBackend(backend.model, backend.processor, model_id="x", device="cpu")
    assert fresh.prepares_in_caller is False and fresh.fast_paths.caller_prepare is False
    assert fresh.prepare(_request("hello")).prepared is None  # the worker will run the processor
    assert FastPaths().caller_prepare == "auto" and FastPaths().resolved("cuda:1").caller_prepare is True


def test_the_judge_prepares_in_the_caller_and_the_worker_only_collates(tiny_checkpoint_path: Path) -> None:
    import threading

    from omniguard_plugins import OmniGuard

    class Watching(TransformersBackend):
        prepared_in: set[str] = set()
        unprepared_batches = 0

        def prepare(self, request: GenerationRequest) -> GenerationRequest:
            self.prepared_in.add(threading.current_thread().name)
            return super().prepare(request)

        def generate(self, requests):  # type: ignore[no-untyped-def]
            self.unprepared_batches += any(r.prepared is None for r in requests)
            return super().generate(requests)

    inner = TransformersBackend.from_pretrained(tiny_checkpoint_path, device="cpu")
    backend = Watching(inner.model, inner.processor, model_id=inner.model_id, device="cpu",
                       fast_paths=FastPaths(caller_prepare=True))
    judge = OmniGuard(backend=backend, cache_size=0)
    try:
        assert not judge.check(user="how do I build a bomb").safe
        assert threading.current_thread().name in backend.prepared_in
        assert backend.unprepared_batches == 0
    finally:
        judge.close()


async def test_async_checks_prepare_off_the_event_loop(tiny_judge) -> None:  # type: ignore[no-untyped-def]
    import threading

    from omniguard_plugins import OmniGuard

    loop_thread = threading.current_thread().name
    seen: list[str] = []
    backend = _with(tiny_judge.backend, caller_prepare=True)
    assert backend.prepares_in_caller
    original = backend.prepare
    backend.prepare = lambda r: (seen.append(threading.current_thread().name), original(r))[1]  # type: ignore[method-assign]
    judge = OmniGuard(backend=backend, cache_size=0)
    try:
        verdict = await judge.acheck(user="tell me about the weather on the 3rd of june please")
    finally:
        judge.close()  # closes the variant only: the shared judge's backend keeps working
    assert verdict.error is None and seen and loop_thread not in seen
    assert tiny_judge.check(user="tell me about the sea").error is None


@pytest.mark.parametrize("mode", ["verdict", "critique"])
def test_static_decode_buffers_change_no_answer(backend: TransformersBackend, mode: str) -> None:
    """The static-buffer decode (graphs are captured on CUDA only; the CPU runs its steps eagerly)."""
    requests = [replace(r, max_new_tokens=30) for r in _mixed_batch(mode)]
    plain = [r.text for r in backend.generate(requests)]
    # buckets of 1, 2 and 4 rows, and the dynamic path past them
    small = _with(backend, decode_graphs=True, decode_max_batch=4)
    static = [r.text for r in small.generate(requests)]
    alone = [r.text for r in small.generate(requests[:3])]
    assert static == plain and alone == plain[:3]
    assert backend.static_decoder is not None and len(backend.static_decoder) > 0
    # a larger cap later gets larger buffers, not an index error
    assert [r.text for r in _with(backend, decode_graphs=True).generate(requests)] == plain
    if mode == "critique":  # five general-template rows decode together: past the old 4-row buffers
        assert backend.static_decoder.max_batch == 32


def test_prefill_projects_only_the_last_position_onto_the_vocabulary(backend: TransformersBackend) -> None:
    batch = backend.encode([_request("how to cook rice"), _request("a much longer question about cooking rice well")])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    positions = backend.thinker.positions(ids, mask, batch)
    with torch.inference_mode():
        ours = backend.thinker.forward(ids, mask, positions, None, {}, use_cache=False).logits
        full = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    assert ours.shape[:2] == (2, 1) and full.shape[:2] == ids.shape  # other callers still get every position
    assert torch.allclose(ours[:, 0], full[:, -1], atol=1e-5)


def test_explained_verdicts_decode_the_critique_without_a_follow_up(tiny_checkpoint_path: Path) -> None:
    from omniguard_plugins import OmniGuard

    backend = TransformersBackend.from_pretrained(tiny_checkpoint_path, device="cpu")
    calls: list[list[str]] = []

    def judge_over(backend: TransformersBackend) -> OmniGuard:
        generate = backend.generate
        backend.generate = lambda requests: (calls.append([r.mode for r in requests]), generate(requests))[1]  # type: ignore[method-assign]
        return OmniGuard(backend=backend, cache_size=0)

    texts = ["how do I build a bomb at home", "please tell me about the weather today"]
    plain_explain = _with(backend, explain_continue=False)  # before judge_over wraps generate
    judge, follow_up = judge_over(backend), judge_over(plain_explain)
    try:
        continued = [judge.check(user=t, explain_unsafe=True) for t in texts]
        assert calls == [["verdict"], ["verdict"]]  # no follow-up critique request
        calls.clear()
        followed = [follow_up.check(user=t, explain_unsafe=True) for t in texts]
        assert calls == [["verdict"], ["critique"], ["verdict"]]
    finally:
        follow_up.close()
        judge.close()
    unsafe, safe = continued
    assert not unsafe.safe and unsafe.critique and unsafe.category_codes == ("S9",)
    assert safe.safe and safe.critique is None
    assert ([(v.safe, v.category_codes, v.critique) for v in continued]
            == [(v.safe, v.category_codes, v.critique) for v in followed])


@pytest.mark.parametrize("mode", ["verdict", "score"])
def test_cached_tower_outputs_change_no_answer(backend: TransformersBackend, mode: str) -> None:
    requests = _mixed_batch(mode) + [
        _request("the same picture again", _image((20, 120, 220)), mode=mode),
        _request("", _image((30, 200, 60), (56, 28)), mode=mode),  # image-only, green: safe where red is not
        _request("another picture", _image((240, 240, 240), (80, 40)), mode=mode),
    ]
    plain = _answers(_with(backend, media_cache=False), requests, prefix_cache=True)
    features = backend.media_features
    features.clear()
    before = features.misses
    first = _answers(backend, requests, prefix_cache=True)
    misses, hits = features.misses, features.hits
    again = _answers(backend, requests, prefix_cache=True)
    assert [t for t, _, _ in first] == [t for t, _, _ in plain] == [t for t, _, _ in again]
    for (_, a, _), (_, b, _) in zip(again, plain):
        assert a == b or a == pytest.approx(b, abs=1e-4)
    if mode == "verdict":  # the image-only pair tells red from blue through the cached path
        assert "unsafe" in first[5][0] and "unsafe" not in first[7][0]
    # seven items, six distinct (one image twice): each computed once, then served from the cache
    assert len(features) == 6 and misses - before == 6
    assert features.hits - hits == 7 and features.misses == misses


def test_tower_cache_stays_within_its_byte_budget(backend: TransformersBackend) -> None:
    from omniguard_plugins.backends.transformers.media_features import MediaFeatureCache

    cache = MediaFeatureCache(max_bytes=3 * 4 * 100)
    for i in range(5):
        cache.put(("image", i), torch.zeros(100, dtype=torch.float32))
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert cache.get(("image", 0)) is None and cache.get(("image", 4)) is not None


def test_label_first_changes_no_verdict(backend: TransformersBackend) -> None:
    """Without label-first every row decodes its label; greedy picks the same one (safe rows then
    also write their Categories line, so compare what the parser reads)."""
    from omniguard_plugins.verdict import parse_output

    requests = _mixed_batch("verdict")
    first = backend.generate(requests)
    decoded = _with(backend, label_first=False).generate(requests)
    policy = Policy()
    read = [[(v.safe, v.category_codes, v.error) for v in (parse_output(r.text, policy) for r in rs)]
            for rs in (first, decoded)]
    assert read[0] == read[1]
    assert any(not safe for safe, _, _ in read[0]) and any(safe for safe, _, _ in read[0])
    assert [r.new_tokens for r in first] != [r.new_tokens for r in decoded]  # the path did change


def test_a_variant_shares_the_model_and_closes_alone(tiny_checkpoint_path: Path) -> None:
    from omniguard_plugins.errors import BackendError

    owner = TransformersBackend.from_pretrained(tiny_checkpoint_path, device="cpu")
    variant = owner.variant(fast_paths=replace(owner.fast_paths, prefix_cache=False), knobs=BenchKnobs(ignore_eos=True))
    assert variant.model is owner.model and variant.prefix_kv is owner.prefix_kv
    assert owner.fast_paths.prefix_cache and not variant.fast_paths.prefix_cache
    assert variant.knobs.ignore_eos and not owner.knobs.ignore_eos
    variant.close()
    with pytest.raises(BackendError):
        variant.generate([_request("hello")])
    assert owner.generate([_request("hello")])[0].text.startswith(LABEL_PREFIX)
    other = owner.variant()
    owner.close()
    with pytest.raises(BackendError):
        other.generate([_request("hello")])
