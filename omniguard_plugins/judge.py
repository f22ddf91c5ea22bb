"""OmniGuard: the judge every adapter calls.

``check`` / ``acheck`` / ``check_many`` / ``acheck_many`` share one implementation: a check is a
generator (``_flow``) that renders the prompt, decodes media, *yields* the model requests it
needs and receives their results, possibly twice (a critique for an unsafe verdict). The sync
and async drivers only differ in how they wait on the micro-batcher's futures, so the logic
exists once, and ``check_many`` submits every request of every check before waiting, so they
share batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .backends.base import Backend, GenerationRequest, GenerationResult
from .batching import MicroBatcher
from .config import JudgeConfig
from .content import Conversation, PartLike, to_parts
from .errors import BackendError, ConfigError, JudgeTimeout, MediaError, OmniGuardError
from .media import DecodedAudio, DecodedMedia, MediaCache, decode_part
from .policy import Policy
from .prompt import Direction, render
from .verdict import LABEL_PREFIX, Mode, Verdict, parse_output

__all__ = ["CheckInput", "JudgeStats", "OmniGuard"]

log = logging.getLogger("omniguard")

#: what check_many accepts per item: a Conversation or the keyword arguments of ``check``
CheckInput = Union[Conversation, Mapping[str, Any]]

_Flow = Generator[list[GenerationRequest], "_Step", Verdict]


@dataclass
class _Step:
    results: list[GenerationResult | BaseException]
    cached: bool


@dataclass(frozen=True)
class _Spec:
    conversation: Conversation
    direction: Direction
    mode: Mode
    policy: Policy
    explain_unsafe: bool


@dataclass
class JudgeStats:
    """Counters the server exports as metrics; cheap enough to keep always."""

    checks: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def record(self, verdict: Verdict) -> None:
        self.checks += 1
        self.verdicts[verdict.label] += 1
        if verdict.error:
            self.errors[verdict.error.split(":", 1)[0]] += 1
        if len(self.latency_ms) < 100_000:
            self.latency_ms.append(verdict.latency_ms)


class OmniGuard:
    """A guard judge. Thread-safe; one per process is enough (see :meth:`shared`)."""

    _shared: ClassVar[dict[JudgeConfig, OmniGuard]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: JudgeConfig | None = None, *, backend: Backend | str | None = None, **settings: Any) -> None:
        if isinstance(backend, str):  # a backend *name* ("transformers", "openai") is a setting
            settings["backend"] = backend
            backend = None
        if config is None:
            config = JudgeConfig.load(**settings)
        elif settings:
            config = config.replace(**settings)
        self.config = config
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._batcher: MicroBatcher | None = None
        self._results: OrderedDict[str, GenerationResult] = OrderedDict()
        self._results_lock = threading.Lock()
        self.media_cache = MediaCache()
        self.stats = JudgeStats()
        self._listeners: list[Callable[[Verdict], None]] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def shared(cls, config: JudgeConfig | None = None, **settings: Any) -> OmniGuard:
        """One judge per configuration per process, so every adapter shares one model and batch."""
        if config is None:
            config = JudgeConfig.load(**settings)
        elif settings:
            config = config.replace(**settings)
        with cls._shared_lock:
            judge = cls._shared.get(config)
            if judge is None:
                judge = cls._shared[config] = cls(config)
            return judge

    @classmethod
    def reset_shared(cls) -> None:
        """Close and forget every shared judge (for tests and reloads)."""
        with cls._shared_lock:
            judges = list(cls._shared.values())
            cls._shared.clear()
        for judge in judges:
            judge.close()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    from .backends import load_backend

                    self._backend = load_backend(self.config)
        return self._backend

    def load(self) -> OmniGuard:
        """Load the model now (instead of on the first check); raises ModelLoadError."""
        _ = self.backend
        return self

    @property
    def batcher(self) -> MicroBatcher:
        if self._batcher is None:
            with self._backend_lock:
                if self._batcher is None:
                    backend = self._backend
                    if backend is None:
                        from .backends import load_backend

                        backend = self._backend = load_backend(self.config)
                    self._batcher = MicroBatcher(
                        backend, max_batch=self.config.max_batch, max_wait_ms=self.config.max_wait_ms
                    )
        return self._batcher

    def add_listener(self, callback: Callable[[Verdict], None]) -> None:
        """Call ``callback(verdict)`` after every check (metrics, audit logs)."""
        self._listeners.append(callback)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._backend is not None and hasattr(self._backend, "close"):
            try:
                self._backend.close()
            except Exception:  # noqa: BLE001
                log.exception("backend close failed")

    def __enter__(self) -> OmniGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public API

    def check(
        self,
        conversation: Conversation | None = None,
        *,
        user: PartLike | Sequence[PartLike] | None = None,
        assistant: PartLike | Sequence[PartLike] | None = None,
        direction: Direction | None = None,
        mode: Mode | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        explain_unsafe: bool | None = None,
    ) -> Verdict:
        """Judge one turn. ``direction`` defaults to ``"output"`` when there is an assistant
        turn, else ``"input"``. Never raises for bad content unless ``on_error="raise"``."""
        spec = self._spec(conversation, user, assistant, direction, mode, policy, explain_unsafe)
        return self._drive([self._flow(spec)])[0]

    async def acheck(
        self,
        conversation: Conversation | None = None,
        *,
        user: PartLike | Sequence[PartLike] | None = None,
        assistant: PartLike | Sequence[PartLike] | None = None,
        direction: Direction | None = None,
        mode: Mode | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        explain_unsafe: bool | None = None,
    ) -> Verdict:
        spec = self._spec(conversation, user, assistant, direction, mode, policy, explain_unsafe)
        return (await self._adrive([self._flow(spec)], offload=self._offload([spec])))[0]

    def check_many(
        self, items: Iterable[CheckInput], *, direction: Direction | None = None, mode: Mode | None = None
    ) -> list[Verdict]:
        """Judge many turns together; their model requests share batches. Order is kept."""
        return self._drive([self._flow(s) for s in self._specs(items, direction, mode)])

    async def acheck_many(
        self, items: Iterable[CheckInput], *, direction: Direction | None = None, mode: Mode | None = None
    ) -> list[Verdict]:
        specs = self._specs(items, direction, mode)
        return await self._adrive([self._flow(s) for s in specs], offload=self._offload(specs))

    # ------------------------------------------------------------------ specs

    def _specs(self, items: Iterable[CheckInput], direction: Direction | None, mode: Mode | None) -> list[_Spec]:
        specs = []
        for item in items:
            if isinstance(item, Conversation):
                specs.append(self._spec(item, None, None, direction, mode, None, None))
            elif isinstance(item, Mapping):
                kwargs = dict(item)
                kwargs.setdefault("direction", direction)
                kwargs.setdefault("mode", mode)
                specs.append(
                    self._spec(
                        kwargs.get("conversation"), kwargs.get("user"), kwargs.get("assistant"),
                        kwargs.get("direction"), kwargs.get("mode"), kwargs.get("policy"), kwargs.get("explain_unsafe"),
                    )
                )
            else:
                raise ConfigError(f"check_many takes Conversations or dicts of check() arguments, got {type(item).__name__}")
        return specs

    def _spec(
        self,
        conversation: Conversation | None,
        user: Any,
        assistant: Any,
        direction: Direction | None,
        mode: Mode | None,
        policy: Policy | Mapping[str, Any] | None,
        explain_unsafe: bool | None,
    ) -> _Spec:
        if conversation is None:
            conversation = Conversation.of(user=to_parts(user) if user is not None else None,
                                           assistant=to_parts(assistant) if assistant is not None else None)
        elif user is not None or assistant is not None:
            raise ConfigError("pass either a Conversation or user=/assistant=, not both")
        if direction is None:
            last = conversation.turns[-1].role if conversation.turns else "user"
            direction = "output" if last == "assistant" else "input"
        if direction not in ("input", "output"):
            raise ConfigError(f"direction must be 'input' or 'output', got {direction!r}")
        mode = mode or self.config.mode
        if mode not in ("verdict", "critique", "score"):
            raise ConfigError(f"mode must be verdict, critique or score, got {mode!r}")
        explain = self.config.explain_unsafe if explain_unsafe is None else explain_unsafe
        return _Spec(conversation, direction, mode, Policy.coerce(policy) if policy is not None else self.config.policy, explain)

    # ------------------------------------------------------------------ the flow of one check

    def _flow(self, spec: _Spec) -> _Flow:
        started = time.perf_counter()
        try:
            rendered = render(spec.conversation, spec.policy, spec.direction)
            media = self._decode(rendered.media)
            variants = _audio_windows(media, self.config.media.audio_window_s)
            requests = [
                GenerationRequest(
                    prompt=rendered.text,
                    media=variant,
                    mode=spec.mode,
                    max_new_tokens=self.config.max_new_tokens,
                    prefix=LABEL_PREFIX,
                    shared_prefix_chars=rendered.shared_prefix_chars,
                    explain_unsafe=spec.explain_unsafe and spec.mode == "verdict",
                )
                for variant, _ in variants
            ]
            step = yield requests
            verdicts = [self._parse(result, spec) for result in step.results]
            index = next((i for i, v in enumerate(verdicts) if not v.safe), 0)
            verdict = verdicts[index]
            details: dict[str, Any] = {}
            if len(variants) > 1:
                unsafe_windows = [i for i, v in enumerate(verdicts) if not v.safe]
                details = {"windows": len(variants), "unsafe_windows": unsafe_windows,
                           "window": index if unsafe_windows else None,
                           "window_s": variants[index][1] if unsafe_windows else None}
                cats = tuple(dict.fromkeys(c for i in unsafe_windows for c in verdicts[i].categories))
                verdict = verdict.with_(categories=cats)
            if spec.explain_unsafe and spec.mode == "verdict" and not verdict.safe and not verdict.error and not verdict.critique:
                chosen = step.results[index]
                assert isinstance(chosen, GenerationResult)
                follow = GenerationRequest(
                    prompt=rendered.text, media=variants[index][0], mode="critique",
                    max_new_tokens=self.config.max_new_tokens, prefix=chosen.text.rstrip() + "\n",
                    shared_prefix_chars=rendered.shared_prefix_chars,
                )
                explained = yield [follow]
                extra = self._parse(explained.results[0], spec)
                # the label stays the verdict's; the continuation only adds the critique
                verdict = verdict.with_(critique=extra.critique, raw=extra.raw if not extra.error else verdict.raw)
            verdict = verdict.with_(cached=step.cached, details={**verdict.details, **details})
        except OmniGuardError as exc:
            verdict = self._failed(exc)
        verdict = verdict.with_(latency_ms=(time.perf_counter() - started) * 1000.0, direction=spec.direction, mode=spec.mode)
        self._record(verdict)
        return verdict

    def _decode(self, parts: Sequence[Any]) -> tuple[DecodedMedia, ...]:
        out: list[DecodedMedia] = []
        counts: Counter[str] = Counter()
        for part in parts:
            counts[part.kind] += 1
            label = f"{part.kind} #{counts[part.kind]}" + (f" ({part.name})" if part.name else "")
            try:
                out.extend(decode_part(part, self.config.media, self.media_cache))
            except MediaError as exc:
                raise exc.for_part(label) from exc
            except OmniGuardError:
                raise
            except Exception as exc:  # noqa: BLE001 - a decoder bug must not crash the host app
                from .errors import CorruptMedia

                raise CorruptMedia(f"could not decode ({type(exc).__name__}: {exc})".splitlines()[0], part=label) from exc
        return tuple(out)

    def _parse(self, result: GenerationResult | BaseException, spec: _Spec) -> Verdict:
        if isinstance(result, BaseException):
            if isinstance(result, OmniGuardError):
                raise result
            raise BackendError(f"backend failed: {type(result).__name__}: {result}".splitlines()[0]) from result
        verdict = parse_output(result.text, spec.policy, score=result.score)
        if spec.mode == "score":
            score = result.score
            if score is None:
                if verdict.error:
                    return self._unparseable(verdict)
                score = 0.0 if verdict.safe else 1.0
            return verdict.with_(safe=score < self.config.threshold, score=score, error=None)
        if verdict.error:
            return self._unparseable(verdict)
        return verdict

    def _unparseable(self, verdict: Verdict) -> Verdict:
        if self.config.on_error == "raise":
            raise BackendError(f"unparseable model output: {verdict.raw[:80]!r}")
        return verdict.with_(safe=self.config.on_error == "allow", error="unparseable")

    def _failed(self, exc: OmniGuardError) -> Verdict:
        if self.config.on_error == "raise":
            raise exc
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("omniguard check failed (%s): %s", exc.kind, reason)
        return Verdict(safe=self.config.on_error == "allow", error=f"{exc.kind}: {reason}",
                       details={"error_kind": exc.kind, "reason": reason})

    def _record(self, verdict: Verdict) -> None:
        self.stats.record(verdict)
        for callback in self._listeners:
            try:
                callback(verdict)
            except Exception:  # noqa: BLE001
                log.exception("verdict listener failed")

    # ------------------------------------------------------------------ drivers

    def _drive(self, flows: list[_Flow]) -> list[Verdict]:
        deadline = time.monotonic() + self.config.timeout_s
        return self._run_flows(flows, lambda futures: _wait_sync(futures, deadline))

    async def _adrive(self, flows: list[_Flow], *, offload: bool = False) -> list[Verdict]:
        deadline = time.monotonic() + self.config.timeout_s
        done: list[Verdict | None] = [None] * len(flows)
        pending = await asyncio.to_thread(self._start, flows, done) if offload else self._start(flows, done)
        while pending:
            futures = [f for _, fs, _ in pending for f in fs]
            results = await _wait_async(futures, deadline)
            if offload:
                pending = await asyncio.to_thread(self._advance, pending, results, done)
            else:
                pending = self._advance(pending, results, done)
        return done  # type: ignore[return-value]

    def _run_flows(self, flows: list[_Flow], wait: Callable[[list[Future[GenerationResult]]], list[Any]]) -> list[Verdict]:
        done: list[Verdict | None] = [None] * len(flows)
        pending = self._start(flows, done)
        while pending:
            futures = [f for _, fs, _ in pending for f in fs]
            pending = self._advance(pending, wait(futures), done)
        return done  # type: ignore[return-value]

    _Pending = list[tuple[int, list[Future[GenerationResult]], tuple[_Flow, list[str], bool]]]

    def _start(self, flows: list[_Flow], done: list[Verdict | None]) -> _Pending:
        return self._submit_all([(i, flow, None) for i, flow in enumerate(flows)], done)

    def _advance(self, pending: _Pending, results: list[Any], done: list[Verdict | None]) -> _Pending:
        steps: list[tuple[int, _Flow, _Step | None]] = []
        pos = 0
        for i, futures, (flow, keys, cached) in pending:
            chunk = results[pos : pos + len(futures)]
            pos += len(futures)
            for key, res in zip(keys, chunk):
                if isinstance(res, GenerationResult) and key:
                    self._remember(key, res)
            steps.append((i, flow, _Step(chunk, cached)))
        return self._submit_all(steps, done)

    def _submit_all(self, steps: list[tuple[int, _Flow, _Step | None]], done: list[Verdict | None]) -> _Pending:
        """Advance every flow (rendering, decoding media) first, then submit all their
        requests at once, so slow decoding of one item cannot split a check_many batch."""
        wanted: list[tuple[int, _Flow, list[GenerationRequest]]] = []
        for i, flow, value in steps:
            try:
                requests = flow.send(value) if value is not None else next(flow)
            except StopIteration as stop:
                done[i] = stop.value
                continue
            wanted.append((i, flow, requests))
        pending: OmniGuard._Pending = []
        for i, flow, requests in wanted:
            futures, keys, all_cached = self._submit(requests)
            pending.append((i, futures, (flow, keys, all_cached)))
        return pending

    def _submit(self, requests: list[GenerationRequest]) -> tuple[list[Future[GenerationResult]], list[str], bool]:
        futures: list[Future[GenerationResult]] = []
        keys: list[str] = []
        all_cached = True
        for req in requests:
            key = self._key(req)
            hit = self._recall(key)
            if hit is not None:
                fut: Future[GenerationResult] = Future()
                fut.set_result(hit)
                futures.append(fut)
                keys.append("")
                self.stats.cache_hits += 1
                continue
            all_cached = False
            try:
                futures.append(self.batcher.submit(self.prepare(req)))
            except OmniGuardError as exc:  # e.g. the model cannot load, the processor rejects the media
                fut = Future()
                fut.set_exception(exc)
                futures.append(fut)
            keys.append(key)
        return futures, keys, all_cached and bool(requests)

    def prepare(self, req: GenerationRequest) -> GenerationRequest:
        """The backend's CPU preprocessing of a raw request, in the calling thread rather than
        the batch worker's (for callers that submit to :attr:`batcher` themselves, as the
        server's chat completions do). Raises ``OmniGuardError`` only."""
        prepare = getattr(self.backend, "prepare", None)
        if prepare is None:
            return req
        try:
            return prepare(req)
        except OmniGuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - a preprocessing bug must not crash the host app
            raise BackendError(f"preprocessing failed ({type(exc).__name__}: {exc})".splitlines()[0][:300]) from exc

    def _offload(self, specs: Sequence[_Spec]) -> bool:
        """Whether advancing these checks does enough CPU work (media decoding, the backend's
        preprocessing) that async callers should run it off the event loop."""
        if any(t.media for s in specs for t in s.conversation.turns):
            return True
        backend = self._backend
        if backend is None:
            return self.config.resolved_backend() == "transformers"
        return callable(getattr(backend, "prepare", None))

    # ------------------------------------------------------------------ result cache

    def _key(self, req: GenerationRequest) -> str:
        h = hashlib.sha256()
        model = getattr(self._backend, "model_id", None) or self.config.model
        for piece in (model, req.mode, str(req.batch_key[1:]), req.prefix, req.prompt):
            h.update(piece.encode())
            h.update(b"\0")
        for m in req.media:
            h.update(m.sha256.encode())
            window = getattr(m, "window", None)
            if window is not None:
                h.update(repr(window).encode())
        return h.hexdigest()

    def _recall(self, key: str) -> GenerationResult | None:
        if self.config.cache_size <= 0:
            return None
        with self._results_lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
            return hit

    def _remember(self, key: str, result: GenerationResult) -> None:
        if self.config.cache_size <= 0:
            return
        with self._results_lock:
            self._results[key] = result
            while len(self._results) > self.config.cache_size:
                self._results.popitem(last=False)


def _wait_sync(futures: list[Future[GenerationResult]], deadline: float) -> list[Any]:
    out: list[Any] = []
    for fut in futures:
        try:
            out.append(fut.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            fut.cancel()
            out.append(JudgeTimeout("no verdict within timeout_s; the model is overloaded or stuck"))
        except BaseException as exc:  # noqa: BLE001
            out.append(exc)
    return out


async def _wait_async(futures: list[Future[GenerationResult]], deadline: float) -> list[Any]:
    wrapped = [asyncio.wrap_future(f) for f in futures]
    timeout = max(0.0, deadline - time.monotonic())
    finished, _ = await asyncio.wait(wrapped, timeout=timeout) if wrapped else (set(), set())
    out: list[Any] = []
    for fut, aw in zip(futures, wrapped):
        if aw in finished:
            exc = aw.exception()
            out.append(exc if exc is not None else aw.result())
        else:
            aw.cancel()
            fut.cancel()
            out.append(JudgeTimeout("no verdict within timeout_s; the model is overloaded or stuck"))
    return out


def _audio_windows(
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
    variants = []
    for w in range(count):
        parts = tuple(splits[i][min(w, len(splits[i]) - 1)] if i in splits else m for i, m in enumerate(media))
        span = next(iter(splits.values()))[min(w, len(next(iter(splits.values()))) - 1)].window
        variants.append((parts, span))
    return variants
