"""The judge's backend for any OpenAI-compatible server: ``omniguard serve`` or ``vllm serve``.

The judge renders the same prompt as in process; this backend sends it as one user message
(the text, then the media as content parts) and forces the answer's start by continuing a
trailing assistant message (vLLM's ``continue_final_message``). Media travel as:

- images: ``image_url`` PNG data URIs (lossless, so the server sees the judge's pixels);
- audio: ``input_audio`` 16-bit 16 kHz mono WAV, base64;
- video: ``video_url`` H.264 mp4 data URIs encoded at the judge's sampling rate with
  imageio-ffmpeg's ffmpeg (vLLM decodes ``video_url`` data URIs for Qwen2.5-Omni; sending the
  frames as separate images would judge a slideshow, not a video). A video's sound travels
  as its own ``input_audio`` part, as the judge decoded it.

Several endpoints (``base_url`` comma-separated) share the load by least outstanding requests;
connection errors, timeouts and 5xx are retried with backoff on the next endpoint; an endpoint
that keeps failing is skipped by its circuit breaker until a cooldown passes. When every try
fails the batch raises BackendError, and the judge's ``on_error`` policy decides the verdict.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .._lru import LRU
from ..answer_format import VERDICT_STOP
from ..errors import BackendError, ConfigError
from ..media import DecodedAudio, DecodedImage, DecodedMedia, DecodedVideo, wav_bytes
from .base import BaseBackend, GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from ..config import JudgeConfig

__all__ = ["EndpointPool", "OpenAIBackend"]

log = logging.getLogger("omniguard")

_VERDICT_MAX_TOKENS = 64
#: encoded media parts kept (a PNG or mp4 data URI each), so a part judged again is not re-encoded
_ENCODED_PARTS = 64


@dataclass
class _Endpoint:
    url: str
    outstanding: int = 0
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class EndpointPool:
    """Least-outstanding-requests choice with a circuit breaker per endpoint.

    After ``failure_threshold`` consecutive failures an endpoint is skipped for ``cooldown_s``;
    then one probe request may try it (half-open): success closes the breaker, failure re-opens it.
    """

    def __init__(self, urls: Sequence[str], *, failure_threshold: int = 3, cooldown_s: float = 5.0) -> None:
        if not urls:
            raise ConfigError("the openai backend needs at least one endpoint in base_url")
        self.endpoints = [_Endpoint(u) for u in urls]
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()

    def acquire(self, avoid: set[str] = frozenset()) -> _Endpoint | None:  # type: ignore[assignment]
        """The usable endpoint with the fewest requests in flight, preferring ones not in ``avoid``."""
        now = time.monotonic()
        with self._lock:
            usable = [e for e in self.endpoints if self._usable(e, now)]
            if not usable:
                return None
            fresh = [e for e in usable if e.url not in avoid] or usable
            chosen = min(fresh, key=lambda e: (e.outstanding, random.random()))
            if chosen.failures >= self.failure_threshold:
                chosen.probing = True
            chosen.outstanding += 1
            return chosen

    def release(self, endpoint: _Endpoint, *, ok: bool) -> None:
        with self._lock:
            endpoint.outstanding -= 1
            endpoint.probing = False
            if ok:
                endpoint.failures = 0
                endpoint.open_until = 0.0
                return
            endpoint.failures += 1
            if endpoint.failures >= self.failure_threshold:
                if endpoint.open_until <= time.monotonic():
                    log.warning("omniguard: endpoint %s failing; skipping it for %.1fs", endpoint.url, self.cooldown_s)
                endpoint.open_until = time.monotonic() + self.cooldown_s

    def _usable(self, e: _Endpoint, now: float) -> bool:
        if e.failures < self.failure_threshold:
            return True
        return now >= e.open_until and not e.probing


class _Retryable(Exception):
    def __init__(self, reason: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        #: the server's Retry-After (429/503): the next try waits at least this long
        self.retry_after_s = retry_after_s


class OpenAIBackend(BaseBackend):
    """Generate through OpenAI-compatible chat completions on one or more endpoints."""

    #: nothing to prepare in the caller: the server does the model's preprocessing
    prepares_in_caller = False

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.05,
        max_concurrency: int = 16,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        top_logprobs: int = 5,
    ) -> None:
        self.pool = EndpointPool([_v1(u) for u in base_urls], failure_threshold=failure_threshold,
                                 cooldown_s=cooldown_s)
        self.model = model
        self.model_id = f"openai:{model}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.top_logprobs = top_logprobs
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_concurrency * 2, max_keepalive_connections=max_concurrency)
        self._client = httpx.Client(headers=headers, limits=limits,
                                    timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)))
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="omniguard-openai")
        self._encoded: LRU[tuple[Any, ...], dict[str, Any]] = LRU(_ENCODED_PARTS, lock=True)

    @classmethod
    def from_config(cls, config: JudgeConfig) -> OpenAIBackend:
        urls = [u.strip() for u in (config.base_url or "").split(",") if u.strip()]
        if not urls:
            raise ConfigError("the openai backend needs base_url (OMNIGUARD_URL), e.g. http://localhost:8000/v1")
        return cls(urls, model=config.model, api_key=config.api_key, timeout_s=config.timeout_s,
                   max_concurrency=max(4, config.max_batch))

    # ------------------------------------------------------------------ the seam

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Send every request at once (the server batches them); fail the batch if one fails,
        so the batcher retries the rest one by one and each caller gets its own error."""
        futures = [self._pool.submit(self._one, req) for req in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ------------------------------------------------------------------ one request

    def _one(self, req: GenerationRequest) -> GenerationResult:
        body = self._body(req)
        data = self._post(body)
        try:
            choice = data["choices"][0]
            completion = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"the server answered without choices[0].message.content: {str(data)[:120]}") from None
        score = _score_from_logprobs(choice.get("logprobs")) if req.mode == "score" else None
        usage = data.get("usage") or {}
        return GenerationResult(text=req.prefix + completion, score=score,
                                new_tokens=int(usage.get("completion_tokens") or 0))

    def _body(self, req: GenerationRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": req.prompt}]
        content.extend(self._media_part(m) for m in req.media)
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0}
        if req.prefix:
            messages.append({"role": "assistant", "content": req.prefix})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if req.mode == "critique":
            body["max_tokens"] = req.max_new_tokens
        else:
            body["max_tokens"] = _VERDICT_MAX_TOKENS
            body["stop"] = list(VERDICT_STOP)
        if req.mode == "score":
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        tried: set[str] = set()
        errors: list[str] = []
        asked = 0.0
        for attempt in range(self.retries + 1):
            endpoint = self.pool.acquire(tried)
            if endpoint is None:
                break
            tried.add(endpoint.url)
            ok = False
            try:
                data = self._attempt(endpoint.url, body, deadline)
                ok = True
                return data
            except _Retryable as exc:
                errors.append(f"{endpoint.url}: {exc}")
                asked = exc.retry_after_s
            finally:
                self.pool.release(endpoint, ok=ok)
            pause = min(2.0, self.backoff_s * (2**attempt)) * (0.5 + random.random())
            if len(tried) >= len(self.pool.endpoints):  # no fresh endpoint left: honour Retry-After
                pause = max(pause, asked)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        reason = errors[-1] if errors else "every endpoint's circuit is open after repeated failures"
        raise BackendError(f"no endpoint answered ({len(errors)} tries): {reason}")

    def _attempt(self, url: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retryable("timed out")
        try:
            resp = self._client.post(f"{url}/chat/completions", json=body,
                                     timeout=httpx.Timeout(remaining, connect=min(5.0, remaining)))
        except httpx.TransportError as exc:  # connection refused/reset, timeouts, protocol errors
            raise _Retryable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Retryable(f"HTTP {resp.status_code}: {_error_message(resp)}",
                             retry_after_s=_retry_after(resp.headers.get("retry-after")))
        if resp.status_code >= 400:
            # the request itself is wrong (auth, a part the server refuses): retrying cannot help
            raise BackendError(f"{url} refused the request: HTTP {resp.status_code}: {_error_message(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise _Retryable("the answer is not JSON") from None

    # ------------------------------------------------------------------ media as content parts

    def _media_part(self, media: DecodedMedia) -> dict[str, Any]:
        part = self._encoded.get(media.key)
        if part is None:
            part = media_content_part(media)
            self._encoded.put(media.key, part)
        return part


def media_content_part(media: DecodedMedia) -> dict[str, Any]:
    """One decoded media item as an OpenAI content part (see the module docstring)."""
    if isinstance(media, DecodedImage):
        buf = io.BytesIO()
        media.image.save(buf, format="PNG")
        return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(buf.getvalue())}}
    if isinstance(media, DecodedAudio):
        wav = wav_bytes(media.samples, media.sample_rate)
        return {"type": "input_audio", "input_audio": {"data": _b64(wav), "format": "wav"}}
    if isinstance(media, DecodedVideo):
        return {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + _b64(mp4_bytes(media))}}
    raise BackendError(f"cannot send media of kind {getattr(media, 'kind', type(media).__name__)!r}")


def mp4_bytes(video: DecodedVideo) -> bytes:
    """Frames -> H.264 mp4 with the ffmpeg binary imageio-ffmpeg ships (no system ffmpeg)."""
    import os
    import tempfile

    import imageio_ffmpeg
    import numpy as np

    frames = np.asarray(video.frames, dtype=np.uint8)
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p: even sides
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            path, (frames.shape[2], frames.shape[1]), fps=max(video.fps, 0.1), codec="libx264",
            macro_block_size=1, output_params=["-crf", "18"], ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as fh:
            return fh.read()
    except (OSError, RuntimeError) as exc:
        raise BackendError(f"could not encode video for the server: {exc}".splitlines()[0]) from exc
    finally:
        os.unlink(path)


# ------------------------------------------------------------------ helpers


def _v1(url: str) -> str:
    """Accept ``http://host:8000`` or ``http://host:8000/v1``; return the ``/v1`` base."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint {url!r} must start with http:// or https://")
    path = httpx.URL(url).path
    return url + "/v1" if path in ("", "/") else url


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds form), 0 when absent or unreadable."""
    try:
        return min(60.0, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]).splitlines()[0][:200]
        if isinstance(err, str):
            return err[:200]
    except (ValueError, AttributeError):
        pass
    return (resp.text or resp.reason_phrase).splitlines()[0][:200] if (resp.text or resp.reason_phrase) else ""


def _score_from_logprobs(logprobs: Any) -> float | None:
    """P(unsafe) from the first generated token whose alternatives include a label.

    Label tokens may carry a leading space or be split (" uns" + "afe"): a candidate counts as
    "unsafe" if it is a prefix of "unsafe" starting with "u", as "safe" likewise. The two masses
    are renormalised. None when no label token is found (the judge then parses the label).
    """
    content = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
    for token in content or []:
        candidates = token.get("top_logprobs") or [{"token": token.get("token", ""), "logprob": token.get("logprob")}]
        unsafe = safe = 0.0
        for cand in candidates:
            text = str(cand.get("token", "")).strip().lower()
            lp = cand.get("logprob")
            if not text or lp is None:
                continue
            p = math.exp(float(lp))
            if text[0] == "u" and "unsafe".startswith(text):
                unsafe += p
            elif text[0] == "s" and "safe".startswith(text):
                safe += p
        if unsafe + safe > 0:
            return unsafe / (unsafe + safe)
    return None
