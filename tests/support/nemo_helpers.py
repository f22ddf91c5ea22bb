"""The scripted judge the NeMo tests share: words and image colour decide. A module of its own
(not ``conftest``) so tests import it by a name no other folder's conftest can shadow."""

from __future__ import annotations

import base64
import io

from PIL import Image as PILImage

from omniguard_plugins.media import DecodedImage
from omniguard_plugins.testing import keyword_handler

UNSAFE = "- Safety Assessment: unsafe\n- Categories: {codes}\n- Assessment: {critique}"
_words = keyword_handler({"bomb": "S9", "poison": "S1"}, critique="It explains how to build a weapon.")


def make_png_data_uri(color: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def is_red(media: object) -> bool:
    if not isinstance(media, DecodedImage):
        return False
    r, g, b = media.image.convert("RGB").resize((1, 1)).getpixel((0, 0))
    return r > 200 and g < 60 and b < 60


def handler(prompt: str, media: list) -> str:
    """Text with 'bomb' is S9, 'poison' S1; a red image is S1 (gore), whatever the text says."""
    if any(is_red(m) for m in media):
        return UNSAFE.format(codes="S1", critique="The image shows graphic violence.")
    return _words(prompt, media)


class ChunkedLLM:
    """A NeMo ``LLMModel`` that streams one answer in the chunks it is given (any boundaries)."""

    model_name = "chunked"
    provider_name = "test"
    provider_url = None

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks
        self.calls = 0

    async def generate_async(self, prompt, *, stop=None, **kwargs):  # noqa: ANN001, ANN201 - NeMo's protocol
        from nemoguardrails.types import LLMResponse

        self.calls += 1
        return LLMResponse(content="".join(self.chunks))

    async def stream_async(self, prompt, *, stop=None, **kwargs):  # noqa: ANN001, ANN201 - NeMo's protocol
        from nemoguardrails.types import LLMResponseChunk

        self.calls += 1
        for chunk in self.chunks:
            yield LLMResponseChunk(delta_content=chunk)
