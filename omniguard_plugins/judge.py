"""OmniGuard: the judge every adapter calls.

The facade: construction and ``shared()``, the public doors (``check`` / ``acheck`` /
``check_many`` / ``acheck_many`` for verdicts, ``generate`` / ``agenerate`` for raw generation),
``on_error`` and stats. Each door builds flows (:mod:`._checkflow`: the logic of one check,
written once as a generator) and hands them to the runner (:mod:`._runner`: cache, prepare,
micro-batcher, one deadline; sync and async differ only in how they wait).

Everything that can go wrong on the way, a message that does not convert (pass a conversation
*builder* and it is called inside the flow), unreadable media, a backend error or a timeout,
reaches :meth:`OmniGuard._decide` and nowhere else, so ``on_error`` is applied once and every
failure is counted in ``stats``, the listeners and ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

from ._checkflow import CheckSpec, Flow, FlowSettings, check_flow, generation_flow
from ._runner import Runner
from .admission import Admission
from .backends.base import Backend, GenerationRequest, GenerationResult
from .batching import MicroBatcher
from .config import JudgeConfig
from .content import Conversation, MediaPart, PartLike, Text, to_parts
from .doors import Ask
from .errors import BackendError, ConfigError, OmniGuardError, OverloadedError
from .media import MediaCache
from .policy import Policy
from .prompt import Direction, shared_prefix_chars
from .verdict import Mode, Verdict

__all__ = ["CheckInput", "ConversationBuilder", "JudgeStats", "OmniGuard"]

log = logging.getLogger("omniguard")

#: a callable that converts a framework's message into a Conversation; called inside the
#: check, so a conversion error becomes a verdict under ``on_error`` like any other failure
ConversationBuilder = Callable[[], Conversation]
#: what check_many accepts per item: an :class:`~omniguard_plugins.doors.Ask`, a Conversation or a
#: builder (a dict of ``check()`` arguments still works, deprecated: build an Ask)
CheckInput = Union["Ask", Conversation, ConversationBuilder, Mapping[str, Any]]
_MODES = ("verdict", "critique", "score")
#: what a check shed for overload gives: a verdict decided by on_error, or the OverloadedError
#: raised (the server answers it 429 with Retry-After instead of sending a verdict)
Shed = Literal["verdict", "raise"]


@dataclass
class JudgeStats:
    """Counters the server exports as metrics; cheap enough to keep always."""

    checks: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    generations: int = 0
    latency_ms: list[float] = field(default_factory=list)
    #: filled in from the runner: results answered from the result cache
    cache_hits: int = 0

    def record(self, verdict: Verdict) -> None:
        self.checks += 1
        self.verdicts[verdict.label] += 1
        if verdict.error:
            self.errors[verdict.error.split(":", 1)[0]] += 1
        if len(self.latency_ms) < 100_000:
            self.latency_ms.append(verdict.latency_ms)


@dataclass(frozen=True)
class _Ask:
    """One check as asked: what to judge (maybe still to be built) and its explicit settings."""

    conversation: Conversation | ConversationBuilder | None
    user: Any
    assistant: Any
    direction: Direction | None
    mode: Mode
    policy: Policy
    explain_unsafe: bool
    localize: bool = False


class OmniGuard:
    """A guard judge. Thread-safe; one per process is enough (see :meth:`shared`)."""

    _shared: ClassVar[dict[JudgeConfig, OmniGuard]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, config: JudgeConfig | None = None, *, backend: Backend | str | None = None, **settings: Any
    ) -> None:
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
        #: reservations taken when a check (or a server request) arrives; see omniguard_plugins.admission
        self.admission = Admission.from_config(config)
        self.media_cache = MediaCache()
        self.stats = JudgeStats()
        self._listeners: list[Callable[[Verdict], None]] = []
        self._runner = Runner(lambda: self.backend, lambda: self.batcher, cache_size=config.cache_size)
        self._settings = FlowSettings(config.media, self.media_cache, config.max_new_tokens, config.threshold,
                                      config.max_text_chars, config.localize_limits)

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
        """The model backend, loaded on first use (raises ModelLoadError)."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    from .backends import load_backend

                    self._backend = load_backend(self.config)
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def load(self) -> OmniGuard:
        """Load the model now (instead of on the first check); raises ModelLoadError."""
        _ = self.backend
        return self

    @property
    def batcher(self) -> MicroBatcher:
        if self._batcher is None:
            backend = self.backend
            with self._backend_lock:
                if self._batcher is None:
                    self._batcher = MicroBatcher.from_config(backend, self.config, admission=self.admission)
        return self._batcher

    def add_listener(self, callback: Callable[[Verdict], None]) -> None:
        """Call ``callback(verdict)`` after every check (metrics, audit logs)."""
        self._listeners.append(callback)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._backend is not None:
            try:
                self._backend.close()
            except Exception:  # noqa: BLE001
                log.exception("backend close failed")

    def __enter__(self) -> OmniGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checks

    def check(
        self,
        conversation: Ask | Conversation | ConversationBuilder | None = None,
        *,
        user: PartLike | Sequence[PartLike] | None = None,
        assistant: PartLike | Sequence[PartLike] | None = None,
        direction: Direction | None = None,
        mode: Mode | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        explain_unsafe: bool | None = None,
        shed: Shed = "verdict",
        localize: bool | None = None,
    ) -> Verdict:
        """Judge one turn (or one :class:`~omniguard_plugins.doors.Ask`). ``direction`` defaults
        to ``"output"`` when there is an assistant turn, else ``"input"``. ``localize`` fills an
        unsafe verdict's ``evidence`` (part, characters, seconds; ``docs/evidence.md``). Never raises for bad
        content unless ``on_error="raise"``. A check that would wait past the queue-delay bound
        is refused at once (``OverloadedError``: a blocking verdict under ``on_error="block"``,
        raised with ``shed="raise"``); ``max_queue_delay_s=0`` makes checks wait instead."""
        ask = self._ask(conversation, user, assistant, direction, mode, policy, explain_unsafe, localize)
        with self.admission.reserved(1) as refused:
            return self._runner.drive([self._check_flow(ask, refused, shed)], self.config.timeout_s)[0]

    async def acheck(
        self,
        conversation: Ask | Conversation | ConversationBuilder | None = None,
        *,
        user: PartLike | Sequence[PartLike] | None = None,
        assistant: PartLike | Sequence[PartLike] | None = None,
        direction: Direction | None = None,
        mode: Mode | None = None,
        policy: Policy | Mapping[str, Any] | None = None,
        explain_unsafe: bool | None = None,
        shed: Shed = "verdict",
        localize: bool | None = None,
    ) -> Verdict:
        ask = self._ask(conversation, user, assistant, direction, mode, policy, explain_unsafe, localize)
        with self.admission.reserved(1) as refused:
            flows = [self._check_flow(ask, refused, shed)]
            return (await self._runner.adrive(flows, self.config.timeout_s, offload=self._offload([ask])))[0]

    def check_many(
        self, items: Iterable[CheckInput], *, direction: Direction | None = None, mode: Mode | None = None,
        shed: Shed = "verdict",
    ) -> list[Verdict]:
        """Judge many turns together; their model requests share batches. Order is kept."""
        asks = self._asks(items, direction, mode)
        with self.admission.reserved(len(asks)) as refused:
            return self._runner.drive([self._check_flow(a, refused, shed) for a in asks], self.config.timeout_s)

    async def acheck_many(
        self, items: Iterable[CheckInput], *, direction: Direction | None = None, mode: Mode | None = None,
        shed: Shed = "verdict",
    ) -> list[Verdict]:
        asks = self._asks(items, direction, mode)
        with self.admission.reserved(len(asks)) as refused:
            return await self._runner.adrive([self._check_flow(a, refused, shed) for a in asks], self.config.timeout_s,
                                             offload=self._offload(asks))

    # ------------------------------------------------------------------ raw generation

    def generate(
        self, prompt: str, media: Sequence[MediaPart] = (), *, prefix: str = "", mode: Mode = "critique",
        max_new_tokens: int | None = None,
    ) -> GenerationResult:
        """The model's raw answer to ``prompt`` (already in the checkpoint's format) and its
        media, starting with ``prefix``: no verdict parsing, but the same decoding, cache,
        batches, deadline, stats and admission as a check. Raises ``OmniGuardError`` (past the
        queue-delay bound: ``OverloadedError``, at once)."""
        flow = self._generation_flow(prompt, media, prefix, mode, max_new_tokens)
        with self.admission.reserved(1) as refused:
            if refused is not None:
                flow.close()
                raise refused
            return self._runner.drive([flow], self.config.timeout_s)[0]

    async def agenerate(
        self, prompt: str, media: Sequence[MediaPart] = (), *, prefix: str = "", mode: Mode = "critique",
        max_new_tokens: int | None = None,
    ) -> GenerationResult:
        flow = self._generation_flow(prompt, media, prefix, mode, max_new_tokens)
        with self.admission.reserved(1) as refused:
            if refused is not None:
                flow.close()
                raise refused
            return (await self._runner.adrive([flow], self.config.timeout_s, offload=True))[0]

    def _generation_flow(self, prompt: str, media: Sequence[MediaPart], prefix: str, mode: Mode,
                         max_new_tokens: int | None) -> Flow:
        if mode not in _MODES:
            raise ConfigError(f"mode must be verdict, critique or score, got {mode!r}")
        request = GenerationRequest(prompt=prompt, mode=mode, prefix=prefix,
                                    max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                    shared_prefix_chars=shared_prefix_chars(prompt))
        self.stats.generations += 1
        try:
            return (yield from generation_flow(request, media, self._settings))
        except OmniGuardError as exc:
            self.stats.errors[exc.kind] += 1
            raise

    # ------------------------------------------------------------------ asks

    def _asks(self, items: Iterable[CheckInput], direction: Direction | None, mode: Mode | None) -> list[_Ask]:
        asks = []
        for item in items:
            if isinstance(item, Ask):
                asks.append(self._from_ask(item, direction, mode))
            elif isinstance(item, Conversation) or callable(item):
                asks.append(self._ask(item, None, None, direction, mode, None, None))
            elif isinstance(item, Mapping):  # deprecated: pass an Ask
                kwargs = {"direction": direction, "mode": mode, **item}
                unknown = set(kwargs) - {"conversation", "user", "assistant", "direction", "mode", "policy",
                                         "explain_unsafe", "localize"}
                if unknown:
                    raise ConfigError(f"check_many items take check() arguments; unknown: {', '.join(sorted(unknown))}")
                asks.append(self._ask(kwargs.get("conversation"), kwargs.get("user"), kwargs.get("assistant"),
                                      kwargs.get("direction"), kwargs.get("mode"), kwargs.get("policy"),
                                      kwargs.get("explain_unsafe"), kwargs.get("localize")))
            else:
                raise ConfigError(f"check_many takes Asks, Conversations or builders, "
                                  f"got {type(item).__name__}")
        return asks

    def _from_ask(self, ask: Ask, direction: Direction | None = None, mode: Mode | None = None) -> _Ask:
        return self._ask(ask.conversation, ask.user, ask.assistant, ask.judged_direction or direction,
                         ask.mode or mode, ask.policy, ask.explain, ask.localize)

    def _ask(self, conversation: Any, user: Any, assistant: Any, direction: Direction | None, mode: Mode | None,
             policy: Policy | Mapping[str, Any] | None, explain_unsafe: bool | None,
             localize: bool | None = None) -> _Ask:
        """The settings, checked now (a wrong setting is the caller's bug, raised at once); the
        content is only converted inside the flow."""
        if isinstance(conversation, Ask):
            if user is not None or assistant is not None:
                raise ConfigError("pass either an Ask or user=/assistant=, not both")
            explicit = conversation
            return self._ask(explicit.conversation, explicit.user, explicit.assistant,
                             explicit.judged_direction or direction, explicit.mode or mode,
                             explicit.policy if explicit.policy is not None else policy,
                             explicit.explain if explicit.explain is not None else explain_unsafe,
                             explicit.localize if explicit.localize is not None else localize)
        if conversation is not None and (user is not None or assistant is not None):
            raise ConfigError("pass either a Conversation or user=/assistant=, not both")
        if direction is not None and direction not in ("input", "output"):
            raise ConfigError(f"direction must be 'input' or 'output', got {direction!r}")
        mode = mode or self.config.mode
        if mode not in _MODES:
            raise ConfigError(f"mode must be verdict, critique or score, got {mode!r}")
        explain = self.config.explain_unsafe if explain_unsafe is None else explain_unsafe
        chosen = Policy.coerce(policy) if policy is not None else self.config.policy
        return _Ask(conversation, user, assistant, direction, mode, chosen, explain,
                    self.config.localize if localize is None else bool(localize))

    def _offload(self, asks: Sequence[_Ask]) -> bool:
        """Whether an async caller should advance these checks off its event loop: a first
        model load, media decoding, content still to convert, or a backend that preprocesses
        in the caller all take real CPU time."""
        if self._backend is None or self._backend.prepares_in_caller:
            return True
        return not all(_plain_text(a.conversation) and _plain_text(a.user) and _plain_text(a.assistant) for a in asks)

    # ------------------------------------------------------------------ one check, and on_error

    def _check_flow(self, ask: _Ask, refused: OverloadedError | None = None, shed: Shed = "verdict") -> Flow:
        started = time.perf_counter()
        try:
            if refused is not None:  # no reservation: refused on arrival, nothing converted or queued
                raise refused
            spec = _spec(ask)
            direction = spec.direction
            outcome: Verdict | OmniGuardError = yield from check_flow(spec, self._settings)
        except OmniGuardError as exc:
            direction = ask.direction or "input"
            outcome = exc
        if shed == "raise" and isinstance(outcome, OverloadedError):
            raise outcome
        verdict = self._decide(outcome)
        verdict = verdict.with_(latency_ms=(time.perf_counter() - started) * 1000.0, direction=direction, mode=ask.mode)
        self.stats.cache_hits = self._runner.cache_hits
        self.stats.record(verdict)
        for callback in self._listeners:
            try:
                callback(verdict)
            except Exception:  # noqa: BLE001
                log.exception("verdict listener failed")
        return verdict

    def _decide(self, outcome: Verdict | OmniGuardError) -> Verdict:
        """``on_error``, the one place: a failure (or an answer the parser could not read) blocks
        under ``"block"``, passes flagged under ``"allow"``, and is raised under ``"raise"``."""
        if isinstance(outcome, Verdict) and not outcome.error:
            return outcome
        if isinstance(outcome, Verdict):  # unparseable model output
            if self.config.on_error == "raise":
                raise BackendError(f"unparseable model output: {outcome.raw[:80]!r}")
            return outcome.with_(safe=self.config.on_error == "allow", error="unparseable")
        if self.config.on_error == "raise":
            raise outcome
        reason = _one_line(str(outcome)) or type(outcome).__name__
        log.warning("omniguard check failed (%s): %s", outcome.kind, reason)
        return Verdict(safe=self.config.on_error == "allow", error=f"{outcome.kind}: {reason}",
                       details={"error_kind": outcome.kind, "reason": reason})


def _one_line(text: str, limit: int = 200) -> str:
    """A reason fit for a verdict, a log line and a client: its first line, cut (it may quote
    client data, which must not come back whole)."""
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _plain_text(value: Any) -> bool:
    """Content that takes no real CPU time to convert and judge: none, text, or media-free turns."""
    if value is None or isinstance(value, (str, Text)):
        return True
    if isinstance(value, Conversation):
        return not value.media
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, Text)) for v in value)


def _spec(ask: _Ask) -> CheckSpec:
    """The check to run: the conversation built (a builder's ContentError surfaces here, inside
    the flow) and the direction it implies."""
    conversation = ask.conversation
    if callable(conversation):
        conversation = conversation()
        if not isinstance(conversation, Conversation):
            raise ConfigError(f"a conversation builder must return a Conversation, got {type(conversation).__name__}")
    elif conversation is None:
        conversation = Conversation.of(user=to_parts(ask.user) if ask.user is not None else None,
                                       assistant=to_parts(ask.assistant) if ask.assistant is not None else None)
    direction = ask.direction
    if direction is None:
        last = conversation.turns[-1].role if conversation.turns else "user"
        direction = "output" if last == "assistant" else "input"
    return CheckSpec(conversation, direction, ask.mode, ask.policy, ask.explain_unsafe, ask.localize)
