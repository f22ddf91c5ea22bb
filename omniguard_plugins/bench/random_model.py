"""Full-size Qwen2.5-Omni thinkers with random weights, built offline on the device.

For benchmarks only: shapes (and so cost) match OmniGuard-7B / -3B; outputs are noise. The
tokenizer is a small BPE trained here; the processor uses the real Qwen2.5-Omni settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends.transformers import BenchKnobs, FastPaths, TransformersBackend

__all__ = ["ARCHS", "build_random_backend"]

# text / vision / audio shapes of the published thinkers. transformers' default vision width
# (3584) is not the real one (1280): it is overridden, as in shared/reference.
ARCHS: dict[str, dict[str, Any]] = {
    "omniguard-7b": dict(
        text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, mrope=[16, 24, 24]),
        out_hidden=3584,
    ),
    "omniguard-3b": dict(
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                  num_attention_heads=16, num_key_value_heads=2, mrope=[16, 24, 24]),
        out_hidden=2048,
    ),
    # not a published shape: a ~40M-parameter thinker that keeps the real prompt lengths, so the
    # CPU can measure ratios between paths (prefix reuse, label first) in minutes
    "small-cpu": dict(
        text=dict(vocab_size=4352, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=2, mrope=[16, 8, 8]),
        out_hidden=512,
        vision=dict(hidden_size=256, intermediate_size=512, depth=2, num_heads=4, fullatt_block_indexes=[1]),
        audio=dict(d_model=256, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=512),
    ),
}


def build_random_backend(arch: str, *, device: str = "cuda", dtype: str = "auto", fast_paths: FastPaths | None = None,
                         knobs: BenchKnobs | None = None) -> TransformersBackend:
    """A thinker of ``arch``'s shape with random weights; pass ``BenchKnobs.random_weights()``
    for verdicts that cost what a trained checkpoint's do."""
    import torch
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    from ..backends.transformers import TransformersBackend
    from ..backends.transformers.loading import resolve_dtype
    from ..testing._tiny import SPECIALS, _build_tokenizer, _examples

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; one of {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    corpus = [p for _, p, _ in _examples(300, 1)] + [a for _, _, a in _examples(300, 2)]
    # no template tokens: prompts must be as long as the published tokenizer makes them
    tok = _build_tokenizer(corpus, 4096, template_tokens=False)
    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 3136, "longest_edge": 12845056},
                                              patch_size=14, temporal_patch_size=2, merge_size=2),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
        tokenizer=tok,
        chat_template=__import__("omniguard_plugins.testing._tiny", fromlist=["CHAT_TEMPLATE"]).CHAT_TEMPLATE,
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    text = dict(spec["text"])
    mrope = text.pop("mrope")
    # transformers' config __init__ keeps keys its typed signature omits (vision_*_token_id here)
    cfg = Qwen2_5OmniThinkerConfig(  # type: ignore[call-arg]
        text_config=dict(**text, tie_word_embeddings=False, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config={**dict(hidden_size=1280, intermediate_size=3420, depth=32, num_heads=16,
                              out_hidden_size=spec["out_hidden"], patch_size=14, spatial_merge_size=2,
                              temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
                       **spec.get("vision", {})},
        audio_config={**dict(output_dim=spec["out_hidden"]), **spec.get("audio", {})},
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=tok.convert_tokens_to_ids("user"),
    )
    torch_dtype = resolve_dtype(dtype, device)
    with torch.device(device):
        model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(cfg, dtype=torch_dtype,
                                                                        attn_implementation="sdpa")
    model.to(device).eval()
    return TransformersBackend(model, processor, model_id=f"random-{arch}", device=device, fast_paths=fast_paths,
                               knobs=knobs)
