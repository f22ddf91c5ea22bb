"""The chat model omni_chat guards: an OpenAI-compatible endpoint when configured, else a local
echo agent that says what it received (so the rails can be seen without any LLM).

    OMNI_CHAT_LLM_URL=http://localhost:8000/v1 OMNI_CHAT_LLM_MODEL=Qwen/Qwen2.5-Omni-7B \\
        python -m demo_apps.omni_chat                     # needs `pip install langchain-openai`
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

__all__ = ["Agent", "EchoChatModel", "describe", "make_agent"]

ECHO_NAME = "local echo agent (no LLM configured: it describes what it received)"


def _human_size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def _describe_block(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        text = str(block.get("text") or "").strip()
        return f'your text, "{text}"' if text else ""
    extras = block.get("extras") if isinstance(block.get("extras"), Mapping) else {}
    name = extras.get("filename") or "an unnamed file"
    mime = block.get("mime_type") or "unknown type"
    raw = base64.b64decode(block["base64"]) if block.get("base64") else b""
    facts = [mime, _human_size(len(raw))]
    if kind == "image" and raw:
        try:
            from PIL import Image

            with Image.open(io.BytesIO(raw)) as img:
                facts.append(f"{img.width}x{img.height} px")
        except Exception:  # noqa: BLE001 - a description, not a decoder: say nothing more
            pass
    nouns = {"image": "an image", "audio": "an audio clip", "video": "a video", "file": "a file"}
    noun = nouns.get(str(kind), "a part")
    return f"{noun}, {name} ({', '.join(facts)})"


def describe(message: BaseMessage) -> str:
    """What the echo agent answers: one sentence per part of the last user message."""
    content = message.content if isinstance(message.content, list) else [{"type": "text", "text": message.content}]
    parts = [d for d in (_describe_block(b) for b in content if isinstance(b, Mapping)) if d]
    if not parts:
        return "I am the local echo agent. I received an empty message."
    listed = parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + "; and " + parts[-1]
    return f"I am the local echo agent, not a real model. I received {listed}."


class EchoChatModel(BaseChatModel):
    """A real LangChain chat model that describes the last user message instead of answering.

    It streams word by word (``delay_s`` between words, so streaming moderation can be seen)."""

    delay_s: float = 0.02

    @property
    def _llm_type(self) -> str:
        return "omniguard-demo-echo"

    def _last_user(self, messages: list[BaseMessage]) -> BaseMessage:
        return next((m for m in reversed(messages) if isinstance(m, HumanMessage)), messages[-1])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=describe(self._last_user(messages))))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        words = describe(self._last_user(messages)).split(" ")
        for i, word in enumerate(words):
            if self.delay_s:
                time.sleep(self.delay_s)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + (" " if i < len(words) - 1 else "")))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


@dataclass(frozen=True)
class Agent:
    model: BaseChatModel
    #: what the page shows about the agent
    name: str
    #: why this agent and not the configured one, if that is the case
    note: str | None = None


def make_agent(env: Mapping[str, str] | None = None) -> Agent:
    """``ChatOpenAI`` on ``OMNI_CHAT_LLM_URL`` (model ``OMNI_CHAT_LLM_MODEL``, key
    ``OMNI_CHAT_LLM_API_KEY``) when that is set and ``langchain-openai`` is installed; else the echo agent."""
    env = os.environ if env is None else env
    url = env.get("OMNI_CHAT_LLM_URL")
    if not url:
        return Agent(EchoChatModel(), ECHO_NAME)
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        note = (f"OMNI_CHAT_LLM_URL is set ({url}) but langchain-openai is not installed "
                "(pip install langchain-openai); using the local echo agent instead.")
        return Agent(EchoChatModel(), ECHO_NAME, note)
    model = env.get("OMNI_CHAT_LLM_MODEL", "Qwen/Qwen2.5-Omni-7B")
    llm = ChatOpenAI(base_url=url, model=model, api_key=env.get("OMNI_CHAT_LLM_API_KEY", "EMPTY"), streaming=True)
    return Agent(llm, f"{model} at {url}")
