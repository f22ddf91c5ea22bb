"""omni_chat: a web chat whose every turn passes OmniGuard's input and output rails.

FastAPI serves one self-contained page (``static/index.html``: no CDN, no network) and
``POST /api/chat``, which streams server-sent events: ``verdict`` (each rail's verdict, as the
``omniguard_verdict`` callback event of ``langchain_omniguard``: the core's verdict summary, with
``evidence`` when the settings ask to localize), ``token`` (answer text that
has passed the output rail so far), ``error`` and ``done``.

The judge is loaded once, when the app is built (:func:`create_app`); the settings panel only
changes per-request arguments (see :mod:`.settings`).

Hooks: ``create_app(judge=..., banner=..., agent=...)`` runs on any judge (tests pass a scripted
one); ``OMNI_CHAT_JUDGE=scripted`` starts the app on a keyword-scripted judge for UI work.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_omniguard import VERDICT_EVENT, guard
from pydantic import BaseModel, Field

from omniguard_plugins import OmniGuard
from omniguard_plugins.doors import DEFAULT_REFUSAL

from .agent import Agent, make_agent
from .settings import ChatSettings, JudgeViews

__all__ = ["SCRIPTED_BANNER", "ChatRequest", "create_app", "load_judge"]

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
#: the core's one refusal template (``{categories}`` filled from the verdict)
REFUSAL = DEFAULT_REFUSAL
SCRIPTED_BANNER = (
    "SCRIPTED JUDGE (OMNI_CHAT_JUDGE=scripted): verdicts are not real; text with bomb, kill, steal "
    "or suicide is unsafe and media are not looked at."
)
_MEDIA_KINDS = ("image", "audio", "video")


class Attachment(BaseModel):
    name: str = "attachment"
    #: ``data:<mime>;base64,<data>``, as the browser's FileReader gives it
    data_url: str


class ChatRequest(BaseModel):
    text: str = ""
    attachments: list[Attachment] = Field(default_factory=list)
    settings: ChatSettings = Field(default_factory=ChatSettings)


def load_judge(say: Callable[[str], Any] = print) -> tuple[OmniGuard, str | None]:
    """The judge the app runs on, and the banner to show (None on a real model)."""
    if os.environ.get("OMNI_CHAT_JUDGE", "").lower() == "scripted":
        from omniguard_plugins.testing import TINY_TRIGGERS, scripted_judge

        return scripted_judge(dict(TINY_TRIGGERS)), SCRIPTED_BANNER
    from omniguard_plugins.demo import demo_judge

    return demo_judge(say=say)


def user_message(request: ChatRequest) -> HumanMessage:
    """The request as one LangChain user message of standard content blocks."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": request.text}] if request.text.strip() else []
    for item in request.attachments:
        head, sep, data = item.data_url.partition(",")
        if not (sep and head.startswith("data:") and head.endswith(";base64")):
            raise HTTPException(422, f"attachment {item.name!r} is not a base64 data: URL")
        mime = head[5:].split(";")[0] or "application/octet-stream"
        kind = mime.split("/")[0]
        # anything but image/audio/video goes as a file block: the rail judges it by type or blocks it
        blocks.append({"type": kind if kind in _MEDIA_KINDS else "file", "base64": data, "mime_type": mime,
                       "extras": {"filename": item.name}})
    if not blocks:
        raise HTTPException(422, "the message is empty: type something or attach a file")
    return HumanMessage(content=blocks)  # type: ignore[arg-type]


class _Verdicts(AsyncCallbackHandler):
    """Collects the rails' verdict events of one run, in order."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == VERDICT_EVENT:
            self.pending.append(data)

    def drain(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        return out


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _text(chunk: Any) -> str:
    return str(chunk.text) if isinstance(chunk, BaseMessage) else str(chunk)


def create_app(judge: OmniGuard | None = None, *, banner: str | None = None, agent: Agent | None = None,
               say: Callable[[str], Any] = print) -> FastAPI:
    """Build the app. Without ``judge`` it loads one now (:func:`load_judge`), once per process."""
    if judge is None:
        judge, banner = load_judge(say)
    views = JudgeViews(judge)
    agent = agent or make_agent()
    if agent.note:
        say(agent.note)
    app = FastAPI(title="omni_chat: OmniGuard demo")
    app.state.views = views
    app.state.agent = agent
    page = PAGE.read_text(encoding="utf-8")
    judged_by = judge.config.base_url or judge.config.model

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "banner": banner,
            "judge": judged_by,
            "agent": agent.name,
            "agent_note": agent.note,
            "categories": [{"code": c.code, "name": c.name, "description": c.description} for c in views.categories],
            "settings": ChatSettings().model_dump(),
        }

    @app.post("/api/chat")
    async def chat(request: ChatRequest) -> StreamingResponse:
        message = user_message(request)
        settings = request.settings
        try:
            policy = views.policy(settings)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        guarded = guard(
            agent.model, judge=views.view(settings), policy=policy, mode=settings.mode,
            check_input=settings.check_input, check_output=settings.check_output,
            exit_behavior="end", violation_message=REFUSAL, window_chars=600, step_chars=160,
        )

        async def events() -> AsyncIterator[str]:
            verdicts = _Verdicts()
            blocked = False
            try:
                async for chunk in guarded.astream([message], config={"callbacks": [verdicts]}):
                    for verdict in verdicts.drain():
                        blocked = blocked or not verdict["safe"]
                        yield _sse("verdict", verdict)
                    if text := _text(chunk):
                        yield _sse("token", {"text": text, "refusal": blocked})
                for verdict in verdicts.drain():
                    blocked = blocked or not verdict["safe"]
                    yield _sse("verdict", verdict)
            except Exception as exc:  # noqa: BLE001 - the agent failed (e.g. its endpoint is down): say so
                yield _sse("error", {"message": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            yield _sse("done", {"blocked": blocked})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return app
