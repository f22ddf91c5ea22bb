"""A tiny OmniGuard-shaped Qwen2.5-Omni checkpoint, built offline in seconds.

Real classes end to end: a byte-level BPE tokenizer trained here and wrapped as
``Qwen2Tokenizer`` with the Omni special tokens, the stock ``Qwen2_5OmniProcessor`` (image,
video and Whisper audio processors), and a ``Qwen2_5OmniForConditionalGeneration`` (thinker +
talker + token2wav) saved with ``save_pretrained``, the layout of the published checkpoints.

With ``train=True`` the thinker is trained on synthetic OmniGuard prompts (with images, sound
and video of varied sizes beside the text) to answer in the three-field format and to call a turn
unsafe when its text holds a trigger word (:data:`TINY_TRIGGERS`); an image judged alone (the
image-only template) is unsafe (S1) when it is mostly red: its mean colour clearly red (about
R >= 180, G and B <= 70, as :func:`~omniguard_plugins.testing.is_mostly_red` tests), safe when
clearly another colour (blue, navy, purple, magenta, black, white, orange...); colours near
that edge may go either way, and so may a red image 112 px or more wide whose top-left corner
(its first image token, about 28x28 px) is another colour. Tests thus get input-dependent
verdicts through the real generate path. Its verdicts mean nothing about real safety.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..answer_format import CATEGORIES_PREFIX, CRITIQUE_PREFIX, LABEL_PREFIX, write_answer

__all__ = ["TINY_TRIGGERS", "build_tiny_checkpoint", "tiny_checkpoint"]

#: trigger word -> the category the tiny model answers with
TINY_TRIGGERS: dict[str, str] = {"bomb": "S9", "kill": "S1", "steal": "S2", "suicide": "S11"}

_VERSION = "10"  # bump when the recipe changes, so cached checkpoints are rebuilt

SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>",
]

# The published Qwen2.5-Omni chat template (default system prompt when none is given).
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "please tell me about the weather today and how to cook rice with vegetables for my family "
    "what is this picture can you describe the sound in the clip I want to learn history of art "
    "help me write a poem about the sea explain the rules of chess where is the nearest library "
    "my friend sent this video is it funny how do I fix my bike the train was late again "
    "recommend a good book summarize the meeting notes translate hello into french"
).split()

_CRITIQUES = {
    "S1": "The message seeks help to hurt or kill a person, which is a violent crime.",
    "S2": "The message asks how to steal, which enables a non-violent crime.",
    "S9": "The message asks how to build a bomb, an indiscriminate weapon.",
    "S11": "The message concerns suicide and could encourage self-harm.",
}
_SAFE_CRITIQUE = "The conversation is harmless and violates no category."


def _sentence(rng: random.Random, trigger: str | None) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 24))]
    if trigger:
        words.insert(rng.randint(0, len(words)), trigger)
    return " ".join(words)


def _answer(codes: list[str]) -> str:
    return write_answer(safe=not codes, categories=codes, critique=_CRITIQUES[codes[0]] if codes else _SAFE_CRITIQUE)


def _examples(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(direction, prompt text, answer) triples rendered with the real prompt code."""
    from ..content import Conversation
    from ..policy import Policy
    from ..prompt import render

    rng = random.Random(seed)
    policy = Policy()
    triggers = list(TINY_TRIGGERS)
    out = []
    for _ in range(n):
        direction = "input" if rng.random() < 0.6 else "output"
        trig = rng.choice(triggers) if rng.random() < 0.5 else None
        if direction == "input":
            convo = Conversation.of(user=_sentence(rng, trig))
        else:
            # the trigger in the agent's answer makes it unsafe; in the user's question only, it is context
            where = rng.random()
            user = _sentence(rng, trig if where < 0.2 else None)
            agent = _sentence(rng, trig if where >= 0.2 else None)
            convo = Conversation.of(user=user, assistant=agent)
            if where < 0.2:
                trig = None
        prompt = render(convo, policy, direction).text  # type: ignore[arg-type]
        out.append((direction, prompt, _answer([TINY_TRIGGERS[trig]] if trig else [])))
    return out


def _template_chunks() -> list[str]:
    """The constant stretches of the prompt and answer formats.

    The tiny tokenizer knows each as one token, so a ~450-token OmniGuard prompt is ~40 tokens
    here and training takes seconds; the text, the chat template and the processor are the real
    ones. (The published tokenizer has no such tokens: this only keeps the test model small.)
    """
    from ..policy import Policy
    from ..prompt import GENERAL_TEMPLATE, IMAGE_ONLY_TEMPLATE

    general = GENERAL_TEMPLATE.format(agent_type="Agent", policies="\0", conversation="\0").split("\0")
    image_only = IMAGE_ONLY_TEMPLATE.format(policies="\0").split("\0")
    pieces = [general[0], general[1], general[2], image_only[0], image_only[1], Policy().render(),
              LABEL_PREFIX, CATEGORIES_PREFIX, CRITIQUE_PREFIX]
    return [p for p in pieces if p.strip()]


#: a lone image (the image-only template) is unsafe (S1) when it is mostly red: its mean colour
#: passes ``is_mostly_red`` (R > 150, G < 100, B < 100). Positives keep a margin inside that
#: zone; negatives stay outside a wider one, many of them just outside it on one side.
_RED = ((180, 255), (0, 70), (0, 70))
_NEAR_RED = ((130, 255), (0, 110), (0, 110))
_IMAGE_ONLY_BATCHES = 40
_IMAGE_SIZES = ((28, 28), (56, 28), (84, 28), (56, 56), (112, 84), (112, 112))


def _other_colour(rng: random.Random) -> tuple[int, int, int]:
    """A colour outside the red zone; hard ones first: red with one channel pushed out (orange,
    magenta, maroon), low green (blue, navy, purple), greys (black to white), then any."""
    def r(lo: int, hi: int) -> int:
        return rng.randint(lo, hi)

    while True:
        kind = rng.random()
        if kind < 0.15:
            rgb = (r(130, 255), r(120, 255), r(0, 110))
        elif kind < 0.3:
            rgb = (r(130, 255), r(0, 255), r(120, 255))
        elif kind < 0.45:
            rgb = (r(0, 120), r(0, 110), r(0, 110))
        elif kind < 0.65:
            rgb = (r(0, 255), r(0, 90), r(0, 255))
        elif kind < 0.8:
            v = r(0, 255)
            rgb = (v, min(255, max(0, v + r(-15, 15))), min(255, max(0, v + r(-15, 15))))
        else:
            rgb = (r(0, 255), r(0, 255), r(0, 255))
        if not all(lo <= c <= hi for c, (lo, hi) in zip(rgb, _NEAR_RED)):
            return rgb


def _image_only_examples(n: int, seed: int) -> list[tuple[str, str, Any]]:
    """Image-only checks: (prompt, answer, PIL image). Some images carry noise texture or a
    patch (at most ~15% of the area) of another colour, and some negatives are pure noise, so
    the rule is the image's overall colour, not one pixel's or one patch's."""
    import numpy as np
    from PIL import Image

    from ..content import Conversation
    from ..content import Image as ImagePart
    from ..policy import Policy
    from ..prompt import render

    rng = random.Random(seed)
    noise = np.random.RandomState(seed)
    prompt = render(Conversation.of(user=[ImagePart(b"placeholder")]), Policy(), "input").text
    out = []
    for _ in range(n):
        unsafe = rng.random() < 0.45
        w, h = _IMAGE_SIZES[rng.randrange(len(_IMAGE_SIZES))]
        if not unsafe and rng.random() < 0.1:
            pixels = noise.randint(0, 256, (h, w, 3)).astype(float)
        else:
            pixels = np.empty((h, w, 3))
            pixels[:] = tuple(rng.randint(lo, hi) for lo, hi in _RED) if unsafe else _other_colour(rng)
            if rng.random() < 0.4:
                pixels += noise.normal(0, rng.uniform(5, 35), pixels.shape)
        if rng.random() < 0.3:
            pw, ph = max(1, int(w * rng.uniform(0.2, 0.38))), max(1, int(h * rng.uniform(0.2, 0.38)))
            x, y = rng.randint(0, w - pw), rng.randint(0, h - ph)
            patch = _other_colour(rng) if unsafe else tuple(rng.randint(lo, hi) for lo, hi in _RED)
            pixels[y : y + ph, x : x + pw] = patch
        out.append((prompt, _answer(["S1"] if unsafe else []), Image.fromarray(pixels.clip(0, 255).astype(np.uint8))))
    return out


def _build_tokenizer(corpus: list[str], vocab_size: int, *, template_tokens: bool = True):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    if template_tokens:
        bpe.add_tokens([AddedToken(chunk, normalized=False, special=False) for chunk in _template_chunks()])
    tok = Qwen2Tokenizer(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
            "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
        },
    )
    tok.padding_side = "left"
    return tok


def _build_processor(tok):
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    # small pixel budgets keep the tiny towers fast; the classes and logic are the real ones
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 28 * 28, "longest_edge": 64 * 28 * 28},
        patch_size=14, temporal_patch_size=2, merge_size=2,
    )
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": 28 * 28, "longest_edge": 16 * 28 * 28},
        patch_size=14, temporal_patch_size=2, merge_size=2,
    )
    feature_extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    return Qwen2_5OmniProcessor(
        image_processor=image_processor, video_processor=video_processor,
        feature_extractor=feature_extractor, tokenizer=tok, chat_template=CHAT_TEMPLATE,
    )


def _mrope(head_dim: int) -> list[int]:
    half = head_dim // 2
    return [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]


def _configs(tok, vocab_size: int, hidden: int = 64):
    from transformers import Qwen2_5OmniConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    user = tok.convert_tokens_to_ids("user")
    tid = dict(
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"], audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"], vision_start_token_id=ids["<|vision_bos|>"],
        vision_end_token_id=ids["<|vision_eos|>"], user_token_id=user if isinstance(user, int) else 0,
    )
    thinker = dict(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope(hidden // 4)},
            tie_word_embeddings=False, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=hidden,
            fullatt_block_indexes=[1],
        ),
        audio_config=dict(
            num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
            d_model=32, output_dim=hidden, n_window=100, max_source_positions=1500,
        ),
        **tid,
    )
    talker = dict(
        vocab_size=64, embedding_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        tts_text_start_token_id=ids["<|endoftext|>"], tts_text_end_token_id=ids["<|endoftext|>"],
        tts_text_pad_token_id=ids["<|endoftext|>"], tts_codec_start_token_id=60, tts_codec_end_token_id=61,
        tts_codec_pad_token_id=62, tts_codec_mask_token_id=63, **tid,
    )
    token2wav = dict(
        dit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, head_dim=16, ff_mult=1,
                        emb_dim=16, num_embeds=64, mel_dim=16, enc_emb_dim=16, enc_dim=16,
                        enc_channels=[16, 16, 16, 16, 32], enc_attention_channels=8, enc_se_channels=8,
                        look_ahead_layers=[1], look_backward_layers=[0]),
        bigvgan_config=dict(mel_dim=16, upsample_initial_channel=16, resblock_kernel_sizes=[3],
                            resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[2, 2],
                            upsample_kernel_sizes=[4, 4]),
    )
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=token2wav)


def _encode_batches(processor, examples, batch_size: int, label_weight: float, seed: int) -> list[tuple[Any, Any]]:
    """Encode the training set once with the real processor: (inputs, loss weights) per batch.
    One batch in six carries a small image or a short sound, so media tokens in a prompt do
    not derail the answer."""
    import numpy as np
    from PIL import Image

    from ..backends.transformers.encoding import media_inputs

    rng = random.Random(seed)
    tok = processor.tokenizer
    batches = []
    for b in range(0, len(examples) - batch_size + 1, batch_size):
        chosen = examples[b : b + batch_size]
        kind = ("image", "audio", "video", None, None, None)[(b // batch_size) % 6]
        texts, answers, images, audios, videos = [], [], [], [], []
        for _, prompt, answer in chosen:
            content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
            # media of varied sizes, so real files (seconds of sound, a few frames) look familiar
            side = rng.choice((28, 56, 84))
            if kind == "image":
                content.append({"type": "image"})
                shade = rng.randint(0, 255)
                images.append(Image.new("RGB", (side, rng.choice((28, 56, 84))), (shade, 255 - shade, 128)))
            elif kind == "audio":
                content.append({"type": "audio"})
                seconds = rng.uniform(0.3, 3.0)
                t = np.arange(int(seconds * 16000)) / 16000
                audios.append((0.2 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)).astype("float32"))
            elif kind == "video":
                content.append({"type": "video"})
                frames = np.random.RandomState(b).randint(0, 255, (rng.choice((2, 4)), side, side, 3))
                videos.append(frames.astype(np.uint8))
            chat = processor.apply_chat_template([{"role": "user", "content": content}],
                                                 add_generation_prompt=True, tokenize=False)
            texts.append(chat + answer + "<|im_end|>")
            answers.append(answer + "<|im_end|>")
        enc = processor(text=texts, return_tensors="pt", padding=True, **media_inputs(images, audios, videos))
        batches.append((enc, _answer_weights(tok, enc["input_ids"].shape, answers, label_weight)))
    return batches + _encode_image_only(processor, batch_size, label_weight, seed)


def _answer_weights(tok, shape: Any, answers: list[str], label_weight: float) -> Any:
    """Loss weights: 1 on each (left-padded, so trailing) answer, ``label_weight`` on its label
    and categories. Those are what tests rely on: weighing them up makes the model learn to
    look for the trigger, not only the format."""
    import torch

    weights = torch.zeros(shape, dtype=torch.float32)
    for i, ans in enumerate(answers):
        n = len(tok(ans, add_special_tokens=False)["input_ids"])
        head = len(tok(ans.split(CRITIQUE_PREFIX)[0], add_special_tokens=False)["input_ids"])
        weights[i, -n:] = 1.0
        weights[i, -n : -n + head] = label_weight
    return weights


def _encode_image_only(processor, batch_size: int, label_weight: float, seed: int) -> list[tuple[Any, Any]]:
    tok = processor.tokenizer
    examples = _image_only_examples(batch_size * _IMAGE_ONLY_BATCHES, seed)
    batches = []
    for b in range(0, len(examples), batch_size):
        chosen = examples[b : b + batch_size]
        texts, answers, images = [], [], []
        for prompt, answer, image in chosen:
            chat = processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "text", "text": prompt}, {"type": "image"}]}],
                add_generation_prompt=True, tokenize=False)
            texts.append(chat + answer + "<|im_end|>")
            answers.append(answer + "<|im_end|>")
            images.append(image)
        enc = processor(text=texts, images=images, return_tensors="pt", padding=True)
        batches.append((enc, _answer_weights(tok, enc["input_ids"].shape, answers, label_weight)))
    return batches


def _train(thinker, processor, examples, steps: int, seed: int, label_weight: float = 4.0, lr: float = 3e-3) -> None:
    import torch

    torch.manual_seed(seed)
    batches = _encode_batches(processor, examples, 16, label_weight, seed)
    opt = torch.optim.AdamW(thinker.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    thinker.train()
    order = random.Random(seed)
    for _ in range(steps):
        enc, weights = batches[order.randrange(len(batches))]
        logits = thinker(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        w = weights[:, 1:].reshape(-1)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                reduction="none")
        loss = (nll * w).sum() / w.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(thinker.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    thinker.eval()


def build_tiny_checkpoint(
    path: str | os.PathLike[str], *, train: bool = True, steps: int = 900, seed: int = 0, hidden: int = 128
) -> Path:
    """Write a tiny OmniGuard-shaped checkpoint to ``path`` and return it.

    ``train=False`` gives random weights (plumbing only: output is noise and parses as
    unparseable); ``train=True`` trains the thinker for ``steps`` steps (about a minute on
    two CPU cores) to answer in the OmniGuard format, unsafe on :data:`TINY_TRIGGERS`.
    """
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    examples = _examples(2000, seed)
    words = sorted(set(_WORDS) | set(TINY_TRIGGERS))
    corpus = [a for _, _, a in examples[:200]] + [" ".join(words)] * 20 + [f" {w}" for w in words] * 20
    corpus += ["You are a helpful assistant.", "system", "user", "assistant", "User: ", "Agent: "] * 20
    tok = _build_tokenizer(corpus, 1024)
    processor = _build_processor(tok)
    config = _configs(tok, len(tok), hidden)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config.thinker_config)
    if train:
        with torch.inference_mode(False):
            _train(thinker, processor, examples, steps, seed)
    full = Qwen2_5OmniForConditionalGeneration(config)
    missing = full.thinker.load_state_dict(thinker.state_dict(), strict=False)
    if missing.missing_keys:
        raise RuntimeError(f"thinker weights did not fit the full model: {missing.missing_keys[:3]}")
    full.generation_config.do_sample = False
    full.save_pretrained(path)
    processor.save_pretrained(path)
    # the speaker table every published checkpoint ships (the full class refuses to load without it)
    mel_dim = config.token2wav_config.dit_config.mel_dim
    torch.save({"Chelsie": {"bos_token": 60, "cond": torch.zeros(1, 16), "ref_mel": torch.zeros(1, 8, mel_dim)}},
               path / "spk_dict.pt")
    (path / "omniguard_tiny.json").write_text(json.dumps(
        {"trained": train, "steps": steps, "triggers": TINY_TRIGGERS, "recipe": _VERSION,
         "note": "tiny test checkpoint: its verdicts mean nothing about real safety"}, indent=2))
    return path


_lock = threading.Lock()


def tiny_checkpoint(*, train: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The tiny checkpoint, built once and cached on disk (``OMNIGUARD_TINY_CACHE`` or
    ``~/.cache/omniguard-plugins``), safe to call from parallel test processes."""
    import transformers

    base = Path(cache_dir or os.environ.get("OMNIGUARD_TINY_CACHE") or Path.home() / ".cache" / "omniguard-plugins")
    key = hashlib.sha256(f"{_VERSION}-{train}-{transformers.__version__}".encode()).hexdigest()[:12]
    target = base / f"tiny-{'trained' if train else 'random'}-{key}"
    if (target / "omniguard_tiny.json").exists():
        return target
    base.mkdir(parents=True, exist_ok=True)
    # one builder at a time across processes (parallel test runs, several apps)
    with _lock, open(base / ".build.lock", "w") as lock_file:
        import fcntl

        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if (target / "omniguard_tiny.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
        try:
            build_tiny_checkpoint(tmp, train=train)
            try:
                tmp.rename(target)
            except OSError:  # another process finished first
                if not (target / "omniguard_tiny.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
