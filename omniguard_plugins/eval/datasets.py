"""The set registry: the 12 benchmark folders, their derived audio/video renditions, user files.

``load_dataset("xstest")`` reads ``<data root>/xstest`` in its native format. The data root is
``root=``, else ``OMNIGUARD_DATA_ROOT``, else ``../shared/data/benchmarks`` beside the checkout
(or beside the working directory) where it exists, else the per-user cache that ``omniguard eval
--download`` fills. Files are read in place, never copied.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..content import Audio, Text, Video
from ..errors import ConfigError
from .derived import MediaMaker, espeak_available
from .items import EvalItem, sample
from .loaders import files, images, responses, text

__all__ = ["DATASETS", "DatasetInfo", "data_root", "dataset_folder", "load_dataset"]

Loader = Callable[[Path], list[EvalItem]]
Deriver = Callable[[EvalItem, MediaMaker, Path], EvalItem]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    #: folder under the data root this set reads
    folder: str
    modality: str
    #: what the label is about: prompt, response, image, pair
    labelled: str
    description: str
    load: Loader
    #: for a derived set: the set it renders, and how one item becomes one rendered item
    base: str | None = None
    derive: Deriver | None = None
    #: a tool the set needs beyond the Python dependencies
    needs: str | None = None

    def available(self) -> bool:
        return self.needs != "espeak-ng" or espeak_available()


def _spoken_prompt(item: EvalItem, maker: MediaMaker, root: Path) -> EvalItem:
    said = " ".join(p.text for p in item.user if isinstance(p, Text))
    wav = maker.speech(said)
    rest = tuple(p for p in item.user if not isinstance(p, Text))
    return item.with_(user=(Audio(wav, name=f"{item.id.split('/', 1)[1]}.wav"), *rest),
                      meta={**item.meta, "spoken": maker.spoken_text(said)})


def _spoken_response(item: EvalItem, maker: MediaMaker, root: Path) -> EvalItem:
    assert item.assistant is not None
    said = " ".join(p.text for p in item.assistant if isinstance(p, Text))
    wav = maker.speech(said)
    return item.with_(assistant=(Audio(wav, name=f"{item.id.split('/', 1)[1]}.wav"),),
                      meta={**item.meta, "spoken": maker.spoken_text(said)})


def _still_clip(item: EvalItem, maker: MediaMaker, root: Path) -> EvalItem:
    clip = maker.still_video(item.meta["image"])
    keep = tuple(p for p in item.user if isinstance(p, Text))
    return item.with_(user=(*keep, Video(clip, name=Path(item.meta["image"]).stem + ".mp4")))


def _flash_clip(item: EvalItem, maker: MediaMaker, root: Path) -> EvalItem:
    """The unsafe image for 1 s between 2 s stretches of a harmless MOSSBench image."""
    backgrounds = sorted((root / "mossbench" / "images").glob("*.png"))
    if not backgrounds:
        raise ConfigError(f"the flash clips need the mossbench images as safe background: {root / 'mossbench'}")
    pick = backgrounds[int(hashlib.sha256(item.id.encode()).hexdigest(), 16) % len(backgrounds)]
    clip = maker.flash_video(pick, item.meta["image"])
    return item.with_(user=(Video(clip, name=Path(item.meta["image"]).stem + "_flash.mp4"),),
                      meta={**item.meta, "background": str(pick), "flash_at_s": 2.0, "flash_s": 1.0})


def _native(name: str, modality: str, labelled: str, description: str, load: Loader,
            folder: str | None = None) -> DatasetInfo:
    return DatasetInfo(name, folder or name, modality, labelled, description, load)


def _derived(name: str, base: DatasetInfo, modality: str, description: str, derive: Deriver) -> DatasetInfo:
    needs = "espeak-ng" if derive in (_spoken_prompt, _spoken_response) else "ffmpeg"
    return DatasetInfo(name, base.folder, modality, base.labelled, description, base.load, base.name, derive, needs)


_NATIVE = [
    _native("xstest", "text", "prompt", "XSTest: 250 safe look-alikes, 200 unsafe prompts", text.xstest),
    _native("openai_moderation", "text", "prompt", "OpenAI moderation eval (any flag = unsafe)",
            text.openai_moderation),
    _native("simplesafetytests", "text", "prompt", "SimpleSafetyTests (all unsafe)", text.simplesafetytests),
    _native("harmbench", "text", "prompt", "HarmBench text behaviours (all unsafe)", text.harmbench),
    _native("harmbench_response", "text", "response", "HarmBench classifier-val responses (human labels)",
            responses.harmbench_response),
    _native("advbench", "text", "prompt", "AdvBench behaviours (all unsafe)", text.advbench),
    _native("jailbreakbench_artifacts", "text", "response", "JailbreakBench responses (LLM-judge labels)",
            responses.jailbreakbench_artifacts),
    _native("jailbreakbench_prompts", "text", "prompt", "JailbreakBench jailbreak prompts (all unsafe)",
            responses.jailbreakbench_prompts, folder="jailbreakbench_artifacts"),
    _native("aegis1_test", "text", "prompt", "Aegis 1.0 test prompts", responses.aegis1_test),
    _native("xstest_response", "text", "response", "XSTest-Response harmfulness", responses.xstest_response),
    _native("figstep", "image", "image", "FigStep typographic images, judged alone (all unsafe)", images.figstep),
    _native("figstep_attack", "text+image", "image", "FigStep attack: benign prompt + image (all unsafe)",
            images.figstep_attack, folder="figstep"),
    _native("mossbench", "text+image", "pair", "MOSSBench image + question (benign safe, contrast unsafe)",
            images.mossbench),
    _native("mossbench_image", "image", "image", "MOSSBench images alone (all safe)", images.mossbench_image,
            folder="mossbench"),
    _native("voice_jailbreak_questions", "text", "prompt", "Voice-jailbreak forbidden questions (all unsafe)",
            text.voice_jailbreak_questions),
]
_BY_NAME = {d.name: d for d in _NATIVE}
_DERIVED = [
    _derived("xstest_audio", _BY_NAME["xstest"], "audio", "XSTest prompts spoken (espeak-ng)", _spoken_prompt),
    _derived("advbench_audio", _BY_NAME["advbench"], "audio", "AdvBench spoken (as Jailbreak-AudioBench)",
             _spoken_prompt),
    _derived("voice_jailbreak_audio", _BY_NAME["voice_jailbreak_questions"], "audio",
             "Voice-jailbreak questions spoken", _spoken_prompt),
    _derived("xstest_response_audio", _BY_NAME["xstest_response"], "text+audio",
             "XSTest-Response with the agent's answer spoken", _spoken_response),
    _derived("harmbench_response_audio", _BY_NAME["harmbench_response"], "text+audio",
             "HarmBench responses with the agent's answer spoken", _spoken_response),
    _derived("mossbench_audio", _BY_NAME["mossbench"], "image+audio", "MOSSBench question spoken beside its image",
             _spoken_prompt),
    _derived("figstep_video", _BY_NAME["figstep"], "video", "FigStep images as 3 s still clips", _still_clip),
    _derived("figstep_flash_video", _BY_NAME["figstep"], "video",
             "FigStep image shown 1 s inside a 5 s harmless MOSSBench clip", _flash_clip),
    _derived("mossbench_video", _BY_NAME["mossbench"], "text+video", "MOSSBench question + its image as a still clip",
             _still_clip),
]

#: every set ``load_dataset`` knows by name, native first
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (*_NATIVE, *_DERIVED)}
_FOLDERS = {d.folder for d in _NATIVE}


def beside_checkout() -> Path | None:
    """``../shared/data/benchmarks`` beside the checkout or the working directory, where it exists."""
    repo = Path(__file__).resolve().parents[2]
    for base in (repo, Path.cwd()):
        candidate = base.parent / "shared" / "data" / "benchmarks"
        if candidate.is_dir():
            return candidate
    return None


#: the one line that says how to get the sets
GET_SETS = ("run `omniguard eval --download all` to fetch the public sets (or see where to get each by hand), "
            "or pass --data-root DIR")


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the benchmark folders are: ``root``, ``OMNIGUARD_DATA_ROOT``, ``../shared/data/benchmarks``
    beside the checkout or the working directory where it exists, else the per-user cache that
    ``omniguard eval --download`` fills (``OMNIGUARD_EVAL_DATA``, else
    ``~/.cache/omniguard-plugins/benchmarks``)."""
    from .download import cache_root

    if root is not None or os.environ.get("OMNIGUARD_DATA_ROOT"):
        path = Path(root if root is not None else os.environ["OMNIGUARD_DATA_ROOT"]).expanduser()
        if not path.is_dir():
            raise ConfigError(f"benchmark data root {path} is not a folder")
        return path
    beside = beside_checkout()
    if beside is not None:
        return beside
    cache = cache_root()
    if cache.is_dir() and any(p.is_dir() and p.name in _FOLDERS for p in cache.iterdir()):
        return cache
    raise ConfigError(f"no benchmark sets found (none beside the checkout, none in {cache}): {GET_SETS}")


def dataset_folder(name: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path | None:
    """What a set is read from (a folder, or a user's file), for the run's data checksums."""
    info = DATASETS.get(str(name))
    if info is None:
        return Path(name) if Path(name).is_file() else None
    folder = data_root(root) / info.folder
    return folder if folder.is_dir() else None


def load_dataset(name: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *, limit: int | None = None,
                 seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[EvalItem]:
    """The items of a named set (see :data:`DATASETS`) or of a user's file (golden JSONL/CSV,
    BeaverTails jsonl, VLGuard test.json). ``limit`` takes a label-stratified sample; derived
    media are made for the sampled items only, and ``progress(done, total)`` is called after
    each (making speech and clips can take minutes)."""
    info = DATASETS.get(str(name))
    if info is None:
        if Path(name).suffix in (".jsonl", ".csv", ".json", ".gz") or Path(name).is_file():
            return sample(files.load_file(Path(name)), limit, seed=seed)
        known = ", ".join(DATASETS)
        raise ConfigError(f"unknown set {name!r}: one of {known}, or a .jsonl/.csv golden-set file")
    base = data_root(root)
    folder = base / info.folder
    if not folder.is_dir():
        raise ConfigError(f"set {info.name!r} is not in the data root: {folder} is missing; "
                          f"`omniguard eval --download {info.name}` fetches it or says where to get it")
    items = sample(info.load(folder), limit, seed=seed)
    if info.derive is None:
        return items
    if not info.available():
        raise ConfigError(f"set {info.name!r} needs {info.needs}, which is not installed "
                          f"(apt-get install {info.needs})")
    maker = MediaMaker(cache_dir)
    out = []
    for n, item in enumerate(items, start=1):
        made = info.derive(item, maker, base)
        out.append(made.with_(id=f"{info.name}/{item.id.split('/', 1)[1]}", dataset=info.name))
        if progress is not None:
            progress(n, len(items))
    return out
