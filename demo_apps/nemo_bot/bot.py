"""nemo_bot: NeMo Guardrails' LLMRails on the shipped OmniGuard rails (``RAILS_DIR``), in a
terminal chat.

The main LLM is a local echo model (it repeats what NeMo hands it as your last message) unless
``NEMO_BOT_LLM_URL`` (and ``NEMO_BOT_LLM_MODEL``) name an OpenAI-compatible endpoint and
``langchain-openai`` is installed; that chat model is handed to NeMo as
``LangChainLLMAdapter(chat_model)``, what NeMo 0.24 asks for (a raw LangChain model is
deprecated). Every verdict of the rails is printed as it happens, through the judge's listener hook.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.types import LLMResponse, LLMResponseChunk
from nemoguardrails_omniguard import RAILS_DIR, register

from omniguard_plugins import OmniGuard, Verdict

__all__ = ["EchoLLM", "NemoBot", "make_llm"]

_TRAILING_ASSISTANT = re.compile(r"\n\s*Assistant:\s*$")


class EchoLLM:
    """A NeMo ``LLMModel`` that answers with the last user message of NeMo's prompt."""

    model_name = "echo"
    provider_name = "local"
    provider_url = None

    def __init__(self) -> None:
        self.calls = 0

    def _answer(self, prompt: Any) -> str:
        self.calls += 1
        if isinstance(prompt, str):
            said = _TRAILING_ASSISTANT.sub("", prompt.rsplit("User:", 1)[-1]).strip()
        else:  # a list of chat messages
            said = next((str(m.content) for m in reversed(prompt) if getattr(m, "role", "") == "user"), "")
        return f"(echo) You said: {said}"

    async def generate_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any) -> LLMResponse:
        return LLMResponse(content=self._answer(prompt))

    async def stream_async(self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        for word in self._answer(prompt).split(" "):
            yield LLMResponseChunk(delta_content=word + " ")


def make_llm(env: Mapping[str, str] | None = None, say: Callable[[str], Any] = print) -> Any:
    env = os.environ if env is None else env
    url = env.get("NEMO_BOT_LLM_URL")
    if url:
        try:
            from langchain_openai import ChatOpenAI
            from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

            chat = ChatOpenAI(base_url=url, model=env.get("NEMO_BOT_LLM_MODEL", "Qwen/Qwen2.5-Omni-7B"),
                              api_key=env.get("NEMO_BOT_LLM_API_KEY", "EMPTY"))
            return LangChainLLMAdapter(chat)
        except ImportError:
            say(f"NEMO_BOT_LLM_URL is set ({url}) but langchain-openai is not installed; using the echo LLM.")
    return EchoLLM()


def describe(verdict: Verdict) -> str:
    rail = "input rail " if verdict.direction == "input" else "output rail"
    names = f" ({', '.join(verdict.category_names)})" if verdict.categories else ""
    error = f" [{verdict.error}]" if verdict.error else ""
    return f"  [{rail}] {verdict.label}{names}{error}, {verdict.latency_ms:.0f} ms"


class NemoBot:
    """One conversation on the shipped rails; ``ask`` returns the bot's answer."""

    def __init__(self, judge: OmniGuard, llm: Any = None, say: Callable[[str], Any] = print) -> None:
        self.llm = llm if llm is not None else make_llm(say=say)
        self.rails = register(LLMRails(RailsConfig.from_path(RAILS_DIR), llm=self.llm), judge=judge)
        self.messages: list[dict[str, Any]] = []
        self.verdicts: list[Verdict] = []
        judge.add_listener(self._heard)
        self._say = say

    def _heard(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self._say(describe(verdict))

    def ask(self, text: str | list[dict[str, Any]]) -> str:
        self.messages.append({"role": "user", "content": text})
        answer = self.rails.generate(messages=self.messages)
        content = str(answer.get("content", ""))
        self.messages.append({"role": "assistant", "content": content})
        return content

    def chat(self, lines: Iterable[str]) -> None:
        for line in lines:
            if line.strip():
                self._say(f"bot> {self.ask(line.strip())}")
