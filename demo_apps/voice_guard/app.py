"""voice_guard: a browser voice and camera chat guarded by OmniGuard, all local.

FastAPI serves one self-contained page (``static/index.html``: no CDN) and the WebRTC offer
route of pipecat's SmallWebRTC transport; each browser connection gets its own pipeline
(:mod:`.bot`). Hooks for tests: ``create_app(judge=..., banner=..., agent=...)``.

    python -m demo_apps.voice_guard            # then open http://127.0.0.1:7861/
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequest, SmallWebRTCRequestHandler

from demo_apps.omni_chat.agent import Agent, make_agent
from demo_apps.omni_chat.app import load_judge
from omniguard_plugins.judge import OmniGuard
from omniguard_plugins.live import LiveSettings

from .bot import run_bot

__all__ = ["create_app"]

PAGE = Path(__file__).resolve().parent / "static" / "index.html"


def create_app(judge: OmniGuard | None = None, *, banner: str | None = None, agent: Agent | None = None,
               settings: LiveSettings | None = None, say: Callable[[str], Any] = print) -> FastAPI:
    """Build the app. Without ``judge`` it loads one now (the demo judge: the configured model,
    else the tiny plumbing checkpoint under its banner)."""
    if judge is None:
        judge, banner = load_judge(say)
    agent = agent or make_agent()
    app = FastAPI(title="voice_guard: OmniGuard live demo")
    handler = SmallWebRTCRequestHandler()
    bots: set[asyncio.Task[None]] = set()
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {"banner": banner, "judge": judge.config.base_url or judge.config.model, "agent": agent.name}

    @app.post("/api/offer")
    async def offer(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("type") != "offer" or not str(body.get("sdp", "")).startswith("v=0"):
            raise HTTPException(422, "not a WebRTC offer: need {'type': 'offer', 'sdp': 'v=0...'}")
        try:
            request = SmallWebRTCRequest.from_dict(dict(body))
        except TypeError as exc:
            raise HTTPException(422, f"not a WebRTC offer: {exc}") from None

        async def start(connection: Any) -> None:
            bot = asyncio.create_task(run_bot(connection, judge, agent, settings))
            bots.add(bot)
            bot.add_done_callback(bots.discard)

        try:
            answer = await handler.handle_web_request(request, start)
        except (ValueError, AssertionError) as exc:  # aiortc's SDP parser asserts on what it cannot read
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise HTTPException(422, f"not a usable WebRTC offer: {reason}") from None
        if answer is None:
            raise HTTPException(500, "no WebRTC answer")
        return dict(answer)

    @app.on_event("shutdown")
    async def stop() -> None:
        for bot in list(bots):
            bot.cancel()
        await handler.close()

    return app
