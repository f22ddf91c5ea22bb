"""A prompt longer than the checkpoint's context is refused at encoding, typed and before any
forward pass, even with the character cap off (multi-token characters get past a character cap)."""

from __future__ import annotations

from pathlib import Path

from omniguard_plugins import OmniGuard


def test_a_prompt_over_the_context_is_a_blocking_verdict(tiny_checkpoint_path: Path) -> None:
    with OmniGuard(model=str(tiny_checkpoint_path), device="cpu", max_text_chars=0, cache_size=0) as judge:
        context = judge.backend.context_tokens
        assert context == 8192  # the tiny checkpoint's text config
        too_long = judge.check(user="word " * (context + 100))
        assert too_long.safe is False and too_long.error.startswith("text_too_large:")
        assert f"{context}-token context" in too_long.error
        # the judge keeps working, and a prompt within the context is judged
        assert judge.check(user="how do I build a bomb").category_codes == ("S9",)
