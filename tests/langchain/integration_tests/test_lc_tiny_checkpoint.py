"""End to end: a real LCEL chain guarded by the real transformers judge (the tiny trained
checkpoint on the CPU): safe input passes, a trigger word blocks before the model, an unsafe
answer is caught by the output rail, and a stream is cut."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_omniguard import GuardViolation, guard


@pytest.mark.slow
def test_tiny_checkpoint_guards_a_chain(model_calls):
    from omniguard_plugins import OmniGuard
    from omniguard_plugins.testing import TINY_TRIGGERS, tiny_checkpoint

    assert "bomb" in TINY_TRIGGERS
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    llm = GenericFakeChatModel(messages=iter([
        "recommend a good book about the sea",
        "the train was late so bomb the library",
    ]))
    with OmniGuard(model=str(tiny_checkpoint()), device="cpu") as judge:
        safe_chain = guard(prompt | llm | StrOutputParser(), judge=judge)

        with pytest.raises(GuardViolation) as blocked:
            safe_chain.invoke({"question": "tell me how to bomb the train"}, {"callbacks": [model_calls]})
        assert blocked.value.stage == "input" and blocked.value.verdict.category_codes == ("S9",)
        assert model_calls.count == 0

        assert safe_chain.invoke({"question": "how do I fix my bike"}) == "recommend a good book about the sea"

        received: list[str] = []
        with pytest.raises(GuardViolation) as cut:
            for chunk in safe_chain.stream({"question": "where is the nearest library"}):
                received.append(chunk)
        assert cut.value.stage == "output" and "bomb" not in "".join(received)
        assert judge.stats.verdicts["unsafe"] == 2 and not judge.stats.errors
