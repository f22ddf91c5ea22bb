"""OmniGuard hooks for a LiveKit ``Agent``, over the core live session.

``class MyAgent(OmniGuardAgentMixin, Agent)`` (or :class:`OmniGuardAgent`) gets:

- ``stt_node``: the user's audio frames are fed to the live session on their way to the STT
  (rolling windows while the user speaks), untouched and not delayed;
- ``on_user_turn_completed``: the finished turn (its transcript, its audio, images the message
  carries and the latest sampled video frame) is judged in one check; unsafe: the refusal is
  said and ``StopResponse`` raised, so the LLM never sees the turn. A typed turn
  (``session.run(user_input=...)``, ``generate_reply``) skips that hook; ``llm_node`` judges it
  instead, before the LLM is called, and answers an unsafe one with the refusal;
- ``llm_node``: the LLM's text passes the core stream rail before any of it reaches the
  transcription and TTS nodes; unsafe: the LLM stream is closed, nothing unjudged was spoken,
  and the refusal is spoken in its place.

The refusal is the core's one template. ``feed_video_frame`` takes the room's camera frames
(``rtc.VideoFrame``) when the app subscribes to them; they are sampled like every door's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import Agent, llm
from livekit.agents.llm import StopResponse

from omniguard_plugins.content import Image, MediaPart, Text
from omniguard_plugins.doors import Blocking, render_tool_call
from omniguard_plugins.live import LiveInputError, LiveSession, LiveSettings, LiveVerdict, OnBlock, live_blocking

if TYPE_CHECKING:
    import asyncio

    from livekit.agents.voice import ModelSettings

    from omniguard_plugins.judge import OmniGuard
    from omniguard_plugins.policy import Policy
    from omniguard_plugins.verdict import Verdict

__all__ = ["OmniGuardAgent", "OmniGuardAgentMixin"]

log = logging.getLogger("livekit_omniguard")



class OmniGuardAgentMixin:
    """Mix in before ``Agent``: ``class MyAgent(OmniGuardAgentMixin, Agent)``. Keyword options
    (taken out before ``Agent.__init__``): ``judge`` (default ``OmniGuard.shared()``),
    ``live_settings``, ``policy``, ``on_block`` (``"speak"`` the refusal or stay ``"silent"``),
    ``template`` (the refusal, default the core's). ``self.omniguard`` is the live session."""

    omniguard: LiveSession
    omniguard_blocking: Blocking

    def __init__(
        self,
        *args: Any,
        judge: OmniGuard | None = None,
        live_settings: LiveSettings | None = None,
        policy: Policy | None = None,
        on_block: OnBlock = "speak",
        template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.omniguard = LiveSession(judge, live_settings, policy=policy)
        self.omniguard_blocking = live_blocking(on_block, template)

    # -------------------------------------------------------------- the user's side

    def stt_node(self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings) -> Any:
        return super().stt_node(self._omniguard_listen(audio), model_settings)  # type: ignore[misc]

    async def _omniguard_listen(self, audio: AsyncIterable[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
        async for frame in audio:
            try:
                self.omniguard.feed_audio(bytes(frame.data.cast("B")), frame.sample_rate, frame.num_channels)
            except LiveInputError as exc:  # counted by the session; the STT still hears it
                log.warning("omniguard: audio frame not judged: %s", exc)
            yield frame

    def feed_video_frame(self, frame: rtc.VideoFrame) -> asyncio.Future[LiveVerdict | None] | None:
        """One camera frame from the room (sampled; see ``LiveSession.feed_image``)."""
        rgba = frame.convert(rtc.VideoBufferType.RGBA)
        return self.omniguard.feed_image(bytes(rgba.data), size=(rgba.width, rgba.height), format="RGBA")

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> None:
        live = await self._omniguard_turn(new_message)
        if live is not None and not live.safe:
            decision = self.omniguard_blocking.decide(live.verdict, "input")
            if decision.text:
                self.session.say(decision.text, add_to_chat_ctx=False)  # type: ignore[attr-defined]
            raise StopResponse()
        await super().on_user_turn_completed(turn_ctx, new_message)  # type: ignore[misc]

    async def _omniguard_turn(self, message: llm.ChatMessage) -> LiveVerdict | None:
        """Judge a user message once (a spoken turn here, a typed one in ``llm_node``)."""
        judged = self.__dict__.setdefault("_omniguard_judged", {})
        if message.id not in judged:
            judged.clear()  # only the latest turn is ever asked about again (tool-call rounds)
            judged[message.id] = await self.omniguard.end_turn(message.text_content, media=_message_media(message))
        return judged[message.id]  # type: ignore[no-any-return]

    # -------------------------------------------------------------- the agent's side

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[llm.ChatChunk | str | Any]:
        user = next((m for m in reversed(chat_ctx.messages()) if m.role == "user"), None)
        if user is not None:  # a typed turn (session.run, generate_reply) never went through the turn hook
            live = await self._omniguard_turn(user)
            if live is not None and not live.safe:
                decision = self.omniguard_blocking.decide(live.verdict, "input")
                if decision.text:
                    yield decision.text  # the reply is the refusal; the LLM is never called
                return
        source = super().llm_node(chat_ctx, tools, model_settings)  # type: ignore[misc]
        if inspect.isawaitable(source):
            source = await source
        if source is None:
            return
        if isinstance(source, (str, llm.ChatChunk)):
            source = _one(source)
        blocked: list[Verdict] = []
        async for chunk in self.omniguard.moderate_output(source, read=_read, on_block=blocked.append):
            yield chunk
        if blocked:
            decision = self.omniguard_blocking.decide(blocked[0], "output")
            if decision.text:
                yield decision.text


class OmniGuardAgent(OmniGuardAgentMixin, Agent):
    """An ``Agent`` with OmniGuard on both sides; takes ``Agent``'s arguments and the mixin's."""


def _read(chunk: Any) -> tuple[str | None, tuple[MediaPart, ...]]:
    """What an ``llm_node`` chunk adds to the answer: its text, or its tool calls rendered the
    way every door renders them; anything else (a flush marker) keeps its place."""
    if isinstance(chunk, str):
        return chunk, ()
    delta = getattr(chunk, "delta", None)
    if delta is None:
        return "", ()
    text = delta.content or ""
    media: list[MediaPart] = []
    for call in delta.tool_calls or ():
        parts = render_tool_call(call.name, call.arguments)
        text += " " + " ".join(p.text for p in parts if isinstance(p, Text))
        media.extend(p for p in parts if not isinstance(p, Text))
    return text, tuple(media)


def _message_media(message: llm.ChatMessage) -> list[MediaPart]:
    """Images the user's message carries (a data URL or a URL, or a video frame)."""
    media: list[MediaPart] = []
    for item in message.content:
        if not isinstance(item, llm.ImageContent):
            continue
        if isinstance(item.image, str):
            media.append(Image(item.image, origin="url"))
        elif isinstance(item.image, rtc.VideoFrame):
            rgba = item.image.convert(rtc.VideoBufferType.RGBA)
            from omniguard_plugins.live import to_pil

            media.append(Image(to_pil(bytes(rgba.data), (rgba.width, rgba.height), "RGBA"), name="video frame"))
    return media


async def _one(value: Any) -> AsyncIterator[Any]:
    yield value
