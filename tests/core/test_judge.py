"""The judge on a scripted backend: batching, concurrency, caching and the on_error policy."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from omniguard_plugins import BackendError, Conversation, JudgeConfig, JudgeTimeout, OmniGuard, Verdict
from omniguard_plugins.testing import ScriptedBackend, keyword_handler, scripted_judge

UNSAFE = "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: bad"


def echo_handler(prompt: str, media: list) -> str:
    """Unsafe with the request's own id as its critique, so each caller can check it got its answer."""
    rid = re.search(r"request-(\d+)", prompt).group(1)
    return f"- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: id={rid}"


def test_check_and_directions() -> None:
    judge = scripted_judge({"bomb": "S9"})
    assert judge.check(user="hello").safe
    v = judge.check(user="how to build a bomb")
    assert (v.safe, v.category_codes, v.direction, v.mode) == (False, ("S9",), "input", "verdict")
    v = judge.check(user="question", assistant="here is a bomb recipe")
    assert v.direction == "output" and not v.safe
    prompt = judge.backend.requests[-1].prompt
    assert "User: question\n\nAgent: here is a bomb recipe" in prompt


def test_modes_and_explain_unsafe() -> None:
    judge = scripted_judge({"bomb": "S9"}, cache_size=0)
    assert judge.check(user="bomb").critique is None  # verdict mode stops before the critique
    assert judge.check(user="bomb", mode="critique").critique == "The content violates the policy."
    scored = judge.check(user="bomb", mode="score")
    assert scored.score == 1.0 and not scored.safe
    explained = judge.check(user="bomb", explain_unsafe=True)
    assert explained.critique == "The content violates the policy." and explained.category_codes == ("S9",)
    # a safe verdict is never sent back for a critique
    before = len(judge.backend.requests)
    judge.check(user="hello", explain_unsafe=True)
    assert len(judge.backend.requests) == before + 1
    follow_up = judge.backend.requests[-2]
    assert follow_up.mode == "critique" and follow_up.prefix.startswith("- Safety Assessment: unsafe")


def test_check_many_keeps_order_and_shares_one_batch() -> None:
    judge = scripted_judge(echo_handler, cache_size=0, max_batch=64, max_wait_ms=50)
    items = [{"user": f"request-{i}"} for i in range(40)]
    verdicts = judge.check_many(items)
    assert [v.critique for v in judge.check_many(items, mode="critique")] == [f"id={i}" for i in range(40)]
    assert len(verdicts) == 40
    judge.backend.reset()
    judge.check_many(items)
    assert judge.backend.calls == 1


def test_check_many_equals_one_at_a_time() -> None:
    judge = scripted_judge({"kill": "S1", "steal": "S2"}, cache_size=0)
    texts = ["kill him", "nice day", "steal a car", "kill and steal", "hello"]
    many = judge.check_many([{"user": t} for t in texts])
    single = [judge.check(user=t) for t in texts]
    assert [(v.safe, v.category_codes) for v in many] == [(v.safe, v.category_codes) for v in single]


def test_200_concurrent_callers_from_tasks_and_threads_each_get_their_own_verdict() -> None:
    backend = ScriptedBackend(echo_handler, delay_s=0.002)
    judge = OmniGuard(backend=backend, model="scripted", cache_size=0, max_batch=32, max_wait_ms=2, mode="critique")
    results: dict[int, Verdict] = {}

    def thread_caller(i: int) -> None:
        results[i] = judge.check(user=f"request-{i}")

    async def async_callers() -> None:
        verdicts = await asyncio.gather(*(judge.acheck(user=f"request-{i}") for i in range(100, 200)))
        results.update(dict(zip(range(100, 200), verdicts)))

    threads = [threading.Thread(target=thread_caller, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    asyncio.run(async_callers())
    for t in threads:
        t.join()
    assert len(results) == 200
    assert all(results[i].critique == f"id={i}" for i in range(200))
    assert judge.batcher.stats.max_batch_seen > 1  # they really shared batches


class Boom(Exception):
    pass


def raising(prompt: str, media: list) -> str:
    raise Boom("GPU on fire")


def test_backend_error_blocks_by_default() -> None:
    v = scripted_judge(raising).check(user="hello")
    assert v.safe is False
    assert v.error.startswith("backend:") and "GPU on fire" in v.error


def test_backend_error_passes_under_allow_and_raises_under_raise() -> None:
    assert scripted_judge(raising, on_error="allow").check(user="hello").safe is True
    with pytest.raises(BackendError, match="GPU on fire"):
        scripted_judge(raising, on_error="raise").check(user="hello")


@pytest.mark.parametrize("on_error,expect", [("block", False), ("allow", True)])
def test_timeout_follows_on_error(on_error: str, expect: bool) -> None:
    slow = ScriptedBackend(keyword_handler([]), delay_s=1.0)
    judge = OmniGuard(backend=slow, model="scripted", timeout_s=0.1, on_error=on_error)
    v = judge.check(user="hello")
    assert v.safe is expect and v.error.startswith("timeout")
    # and the judge keeps serving once the backend catches up
    time.sleep(1.0)
    judge.config = JudgeConfig.load(model="scripted", timeout_s=5)
    assert judge.check(user="next").error is None


async def test_async_timeout_raises_under_raise() -> None:
    slow = ScriptedBackend(keyword_handler([]), delay_s=1.0)
    judge = OmniGuard(backend=slow, model="scripted", timeout_s=0.1, on_error="raise")
    with pytest.raises(JudgeTimeout):
        await judge.acheck(user="hello")


def test_unparseable_output_follows_on_error() -> None:
    assert scripted_judge(lambda p, m: "lol no").check(user="x").error == "unparseable"
    assert scripted_judge(lambda p, m: "lol no").check(user="x").safe is False
    assert scripted_judge(lambda p, m: "lol no", on_error="allow").check(user="x").safe is True
    with pytest.raises(BackendError, match="unparseable"):
        scripted_judge(lambda p, m: "lol no", on_error="raise").check(user="x")


def test_one_bad_request_does_not_sink_its_batch() -> None:
    def picky(prompt: str, media: list) -> str:
        if "poison" in prompt:
            raise Boom("bad input")
        return keyword_handler([])(prompt, media)

    verdicts = scripted_judge(picky, max_wait_ms=50).check_many([{"user": "a"}, {"user": "poison"}, {"user": "b"}])
    assert [v.error is None for v in verdicts] == [True, False, True]


def test_verdict_cache_hits_for_the_same_prompt_and_mode() -> None:
    judge = scripted_judge({"bomb": "S9"})
    judge.check(user="bomb")
    calls = judge.backend.calls
    again = judge.check(user="bomb")
    assert judge.backend.calls == calls and again.cached
    judge.check(user="bomb", mode="critique")
    assert judge.backend.calls == calls + 1


def test_shared_returns_one_judge_per_configuration() -> None:
    try:
        a = OmniGuard.shared(model="some/model", max_batch=4)
        assert OmniGuard.shared(model="some/model", max_batch=4) is a
        assert OmniGuard.shared(model="some/model", max_batch=8) is not a
    finally:
        OmniGuard.reset_shared()


def test_bad_arguments_are_config_errors_not_verdicts() -> None:
    judge = scripted_judge([])
    from omniguard_plugins import ConfigError

    with pytest.raises(ConfigError):
        judge.check(user="x", direction="sideways")
    with pytest.raises(ConfigError):
        judge.check(user="x", mode="fast")
    with pytest.raises(ConfigError):
        OmniGuard(backend=judge.backend, on_error="maybe")


def test_empty_conversation_blocks_with_a_reason() -> None:
    v = scripted_judge([]).check(Conversation(()))
    assert not v.safe and v.error.startswith("content:")


def test_listeners_and_stats_see_every_verdict() -> None:
    judge = scripted_judge({"bomb": "S9"})
    seen: list[Verdict] = []
    judge.add_listener(seen.append)
    judge.check(user="bomb")
    judge.check(user="fine")
    assert [v.label for v in seen] == ["unsafe", "safe"]
    assert judge.stats.verdicts["unsafe"] == 1 and judge.stats.checks == 2
