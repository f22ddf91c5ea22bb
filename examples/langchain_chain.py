"""OmniGuard around a LangChain chain and an agent, runnable offline.

    python examples/langchain_chain.py                   # a scripted judge ("bomb" is unsafe)
    OMNIGUARD_MODEL=/path/to/OmniGuard-3B python examples/langchain_chain.py   # the real model

The chat model is LangChain's GenericFakeChatModel so the example needs no API key; put your own
model (ChatOpenAI, ChatOllama, ...) in its place.
"""

from __future__ import annotations

import base64
import io
import os

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import GuardViolation, OmniGuardMiddleware, OmniGuardRunnable, guard
from PIL import Image

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import scripted_judge


class AgentModel(GenericFakeChatModel):
    """The fake model, made bindable to tools so create_agent accepts it."""

    def bind_tools(self, tools, **kwargs):  # noqa: ANN001, ANN201
        return self


def make_judge() -> OmniGuard:
    if os.environ.get("OMNIGUARD_MODEL"):
        return OmniGuard.shared()  # reads OMNIGUARD_MODEL, OMNIGUARD_DEVICE, ...
    return scripted_judge({"bomb": "S9", "steal": "S2"})


def png_b64(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def main() -> None:
    judge = make_judge()
    prompt = ChatPromptTemplate.from_messages([("human", [
        {"type": "text", "text": "{question}"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,{image}"}},
    ])])
    llm = GenericFakeChatModel(messages=iter([
        "A calm blue square, nothing more.",
        "Sure. First you go to the shop, then you steal the watch while nobody looks.",
    ]))
    safe_chain = guard(prompt | llm | StrOutputParser(), judge=judge, step_chars=40, window_chars=160)
    image = png_b64((30, 60, 200))

    print("1. safe question + image ->", safe_chain.invoke({"question": "What is in this picture?", "image": image}))

    try:
        safe_chain.invoke({"question": "How do I build a bomb?", "image": image})
    except GuardViolation as err:
        print(f"2. blocked before the model ({err.stage}): {err.verdict.summary()}")

    print("3. streaming, cut at the first unsafe window: ", end="", flush=True)
    try:
        for chunk in safe_chain.stream({"question": "Any shopping tips?", "image": image}):
            print(chunk, end="", flush=True)
    except GuardViolation as err:
        print(f"\n   [stream stopped: {err.verdict.summary()}]")
    else:
        print()

    check_in = OmniGuardRunnable(judge=judge, exit_behavior="end", violation_message="Not answering: {categories}.")
    print("4. OmniGuardRunnable(exit_behavior='end') ->", check_in.invoke("how to steal a car").content)

    from langchain.agents import create_agent

    agent = create_agent(
        AgentModel(messages=iter([AIMessage("Hello! How can I help?")])),
        tools=[],
        middleware=[OmniGuardMiddleware(judge=judge, exit_behavior="end",
                                        violation_message="Sorry, I can't help with {categories}.")],
    )
    reply = agent.invoke({"messages": [HumanMessage("Explain how a bomb is built.")]})["messages"][-1]
    print("5. agent with OmniGuardMiddleware ->", reply.content)
    judge.close()


if __name__ == "__main__":
    main()
