"""Real LangChain pieces (ChatPromptTemplate, GenericFakeChatModel, create_agent), real media made
here (PIL PNGs, a numpy WAV, an ffmpeg MP4), and a scripted judge: text about a bomb is unsafe
(S9), a mostly red image is unsafe (S1), everything else safe."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from omniguard_plugins import OmniGuard
from omniguard_plugins.testing import scripted_judge
from tests.support.media_makers import BLUE, RED, png_bytes, red_is_unsafe, wav_bytes

UNSAFE_IMAGE = "- Safety Assessment: unsafe\n- Categories: S1\n- Assessment: A violent image."

@pytest.fixture
def judge():
    # cache_size=0: tests count backend calls; max_wait_ms: room for a batch to gather on a busy box
    og = scripted_judge(red_is_unsafe, cache_size=0, max_wait_ms=50)
    yield og
    og.close()

@pytest.fixture(autouse=True)
def _no_shared_judge_leaks():
    yield
    OmniGuard.reset_shared()

@pytest.fixture(scope="session")
def red_png() -> bytes:
    return png_bytes(RED, (32, 32))

@pytest.fixture(scope="session")
def blue_png() -> bytes:
    return png_bytes(BLUE, (32, 32))

@pytest.fixture(scope="session")
def wav() -> bytes:
    return wav_bytes(0.5)

@pytest.fixture(scope="session")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=4:duration=1",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(path)],
        check=True, capture_output=True,
    )
    return Path(path).read_bytes()

class ModelCalls(BaseCallbackHandler):
    """Counts chat model calls, the way a user would watch them: through callbacks."""

    def __init__(self) -> None:
        self.count = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.count += 1

class VerdictEvents(BaseCallbackHandler):
    """Collects the ``omniguard_verdict`` custom events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))

class ToolCallingFakeModel(GenericFakeChatModel):
    """GenericFakeChatModel that create_agent can bind tools to; remembers what it was sent."""

    seen: list[list[BaseMessage]] = []

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCallingFakeModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

@pytest.fixture
def fake_model():
    def make(*replies: AIMessage | str) -> ToolCallingFakeModel:
        return ToolCallingFakeModel(messages=iter(replies), seen=[])

    return make


@pytest.fixture
def model_calls() -> ModelCalls:
    return ModelCalls()


@pytest.fixture
def verdict_events() -> VerdictEvents:
    return VerdictEvents()
