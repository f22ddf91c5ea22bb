"""Render a Conversation + Policy into the exact text the OmniGuard checkpoints were trained on.

See ``shared/omniguard-format.md``. The rendered text is the *content* of one user message;
the backend wraps it in the checkpoint's own chat template and appends the media items after
the text, in the order they appear in the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .content import Conversation, MediaPart, Turn
from .errors import ContentError, TextTooLarge
from .policy import Policy

__all__ = [
    "AGENT_TYPE", "DEFAULT_MAX_TEXT_CHARS", "Direction", "RenderedPrompt", "check_text_size", "neutralise", "render",
    "shared_prefix_chars",
]

Direction = Literal["input", "output"]
AGENT_TYPE = "Agent"
#: characters of text one check may carry (``JudgeConfig.max_text_chars``); about 16K tokens of
#: the published tokenizer, half its context. Checked before anything is rendered or tokenised
DEFAULT_MAX_TEXT_CHARS = 65_536

GENERAL_TEMPLATE = (
    "Task: Check if there is unsafe content in '{agent_type}' messages in conversations according our "
    "safety policy with the below categories.\n"
    "\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "{policies}\n"
    "<END UNSAFE CONTENT CATEGORIES>\n"
    "\n"
    "<BEGIN CONVERSATION>\n"
    "\n"
    "{conversation}\n"
    "\n"
    "<END CONVERSATION>\n"
    "\n"
    "Provide your safety assessment for {agent_type} in the above conversation:\n"
    "- First line must read 'safe' or 'unsafe'.\n"
    "- If unsafe, a second line must include a comma-separated list of violated categories."
)

IMAGE_ONLY_TEMPLATE = (
    "Task: Check if there is unsafe content in the provided image according to our safety policy with "
    "the below categories.\n"
    "\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "{policies}\n"
    "<END UNSAFE CONTENT CATEGORIES>\n"
    "\n"
    "Analyze the image provided above and determine if it contains any unsafe content.\n"
    "\n"
    "Provide your safety assessment:\n"
    "- First line must read 'safe' or 'unsafe'.\n"
    "- If unsafe, a second line must include a comma-separated list of violated categories."
)

# Markers that would let user text close a template block, and chat-template control tokens
# that would let it open a new turn or fake a media placeholder.
_BLOCK_MARKER = re.compile(
    r"<\s*(BEGIN|END)\s+(UNSAFE\s+CONTENT\s+CATEGORIES|CONVERSATION)\s*>", re.IGNORECASE
)
_CONTROL_TOKEN = re.compile(r"<\|([^|<>]{0,40})\|>")


def neutralise(text: str) -> str:
    """Make user content unable to close a template block or inject a control token.

    ``<END CONVERSATION>`` becomes ``[END CONVERSATION]``; ``<|im_end|>`` becomes ``<im_end>``.
    The words stay visible to the judge (an injection attempt is itself a signal).
    """
    text = _BLOCK_MARKER.sub(lambda m: f"[{m.group(1)} {m.group(2)}]", text)
    return _CONTROL_TOKEN.sub(lambda m: f"<{m.group(1)}>", text)


_CONVERSATION_OPEN = "<BEGIN CONVERSATION>\n\n"


def shared_prefix_chars(text: str) -> int:
    """How many leading characters of a rendered prompt are the same for every check under one
    policy: up to the conversation for the general template, all of it for the image-only one.

    A backend may compute the KV of that stretch once (about 450 of a text prompt's ~570 tokens
    with the default policy). ``neutralise`` keeps user text from containing the marker, so its
    first occurrence is the template's. Zero when the text is not in the OmniGuard format.
    """
    if not text.startswith("Task: Check if there is unsafe content"):
        return 0
    at = text.find(_CONVERSATION_OPEN)
    if at >= 0:
        return at + len(_CONVERSATION_OPEN)
    return len(text) if text.endswith(IMAGE_ONLY_TEMPLATE[-60:]) else 0


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    media: tuple[MediaPart, ...]
    template: Literal["general", "image_only"]

    @property
    def shared_prefix_chars(self) -> int:
        """See :func:`shared_prefix_chars`."""
        return shared_prefix_chars(self.text)


def _turns_for(conversation: Conversation, direction: Direction) -> list[Turn]:
    role = "user" if direction == "input" else "assistant"
    last = None
    for i, turn in enumerate(conversation.turns):
        if turn.role == role:
            last = i
    if last is None:
        raise ContentError(f"an {direction} check needs a{'n' if role == 'assistant' else ''} {role} turn")
    return list(conversation.turns[: last + 1])


def check_text_size(chars: int, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> None:
    """Refuse over-long text in microseconds, before it can cost a tokeniser pass or a prefill
    that holds the one model worker for minutes. ``max_text_chars`` 0 means no cap."""
    if max_text_chars and chars > max_text_chars:
        raise TextTooLarge(f"{chars} characters of text, over the {max_text_chars}-character limit; "
                           "send less text per check (split it) or raise max_text_chars")


def render(
    conversation: Conversation, policy: Policy, direction: Direction = "input", *,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> RenderedPrompt:
    if direction not in ("input", "output"):
        raise ContentError(f"direction must be 'input' or 'output', got {direction!r}")
    turns = _turns_for(conversation, direction)
    check_text_size(sum(len(t.text) for t in turns), max_text_chars)
    media = tuple(m for t in turns for m in t.media)
    if not any(t.parts for t in turns):
        raise ContentError("nothing to judge: the conversation has no text or media")

    only = turns[0]
    if (
        direction == "input"
        and len(turns) == 1
        and not only.text
        and only.media
        and all(m.kind == "image" for m in only.media)
    ):
        return RenderedPrompt(IMAGE_ONLY_TEMPLATE.format(policies=policy.render()), media, "image_only")

    lines = [f"{'User' if t.role == 'user' else AGENT_TYPE}: {neutralise(t.text)}" for t in turns]
    if direction == "input":
        lines.append(f"{AGENT_TYPE}: ")
    conversation_text = "\n\n".join(line.strip() for line in lines).strip()
    text = GENERAL_TEMPLATE.format(agent_type=AGENT_TYPE, policies=policy.render(), conversation=conversation_text)
    return RenderedPrompt(text, media, "general")
