"""``omniguard eval --download SETS``: fetch public sets into the per-user cache.

A set is fetched through the Hugging Face hub client (``huggingface_hub``, which comes with
transformers) only where its source is a hub dataset holding the very files the set's loader
reads; each such set is listed in :data:`HUB_SETS` with its dataset id and the files to take.
Every other set says in one line where to get it by hand (:data:`BY_HAND`: the repository,
commit and files its README names). The hub endpoint is ``HF_ENDPOINT`` (read at each call, so
a mirror works), else huggingface.co. Offline, or when a file is missing there, the error is one
line naming the set; the files of a set land only once all of them are fetched.

No set known to the eval qualifies today: every copied set comes from GitHub; the two whose
READMEs name a hub dataset (``aegis1_test``: nvidia/Aegis-AI-Content-Safety-Dataset-1.0,
``xstest_response``: allenai/xstest-response, gated) are read here from GuardReasoner's
converted files, whose layout the hub originals do not share. A set is added to
:data:`HUB_SETS` once its hub files are checked on a machine that reaches the hub.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["BY_HAND", "HUB_SETS", "DownloadError", "HubSource", "cache_root", "download_sets", "folders_for"]


@dataclass(frozen=True)
class HubSource:
    """A hub dataset and the files to take from it: path in the hub repo -> path in the set's folder."""

    repo: str
    files: Mapping[str, str]
    revision: str = "main"
    licence: str = ""


class DownloadError(ConfigError):
    """A set could not be fetched (offline, missing file, refused); the message is one line."""


#: set folder -> where it comes from on the hub (see the module docstring for why it is empty)
HUB_SETS: dict[str, HubSource] = {}

#: set folder -> where to get it by hand (its README's source), one line each
BY_HAND: dict[str, str] = {
    "xstest": "xstest_prompts.csv from github.com/paul-rottger/exaggerated-safety @ d7bb5bd738c1 (CC-BY-4.0)",
    "openai_moderation": "data/samples-1680.jsonl.gz from github.com/openai/moderation-api-release @ f4ab51b5edd3 "
                         "(MIT), as samples-1680.jsonl.gz",
    "simplesafetytests": "'SimpleSafetyTests - test cases.csv' from github.com/bertiev/SimpleSafetyTests @ "
                         "d7aee9a9422a (CC-BY-4.0)",
    "harmbench": "data/behavior_datasets/harmbench_behaviors_text_all.csv from github.com/centerforaisafety/HarmBench "
                 "(MIT), as harmbench_behaviors_text_all.csv",
    "harmbench_response": "data/benchmark/0_5_harmbench_response.json from github.com/yueliu1999/GuardReasoner @ "
                          "bb7e686dc053 (rows MIT; the repository has no licence), as 0_5_harmbench_response.json",
    "advbench": "Text/Explicit_Advbench.csv from github.com/Researchtopic/Code-Jailbreak-AudioBench @ 92b125667221 "
                "(MIT), as Explicit_Advbench.csv",
    "jailbreakbench_artifacts": "attack-artifacts/<method>/<kind>/<model>.json files from "
                                "github.com/JailbreakBench/artifacts @ 909e68c01d94 (MIT), same paths",
    "aegis1_test": "data/benchmark/0_1_AegisSafetyTest.json from github.com/yueliu1999/GuardReasoner @ bb7e686dc053 "
                   "(rows CC-BY-4.0, NVIDIA; the hub's nvidia/Aegis-AI-Content-Safety-Dataset-1.0 has another "
                   "layout), as 0_1_AegisSafetyTest.json",
    "xstest_response": "data/benchmark/0_6_xstest_response_harmful.json from github.com/yueliu1999/GuardReasoner @ "
                       "bb7e686dc053 (rows ODC-BY; the hub's gated allenai/xstest-response has another layout), as "
                       "0_6_xstest_response_harmful.json",
    "figstep": "data/images/SafeBench-Tiny/*.png and data/question/*.csv from github.com/ThuCCSLab/FigStep @ "
               "0861b17b3d67 (MIT), same paths",
    "mossbench": "the synthesized images (data/images/{pid}.png) and the two images_information JSON files from "
                 "github.com/xirui-li/MOSSBench @ 8d68b0614b39 (CC BY-SA 4.0, test use only), as images/ and "
                 "information.json, information_contrast.json",
    "voice_jailbreak_questions": "data/question_set/questions_tiny.csv from "
                                 "github.com/TrustAIRLab/VoiceJailbreakAttack @ 3bffa8b0d2da (MIT), as "
                                 "questions_tiny.csv",
}


def cache_root() -> Path:
    """Where downloaded sets go (and where the eval looks when no data root is beside the
    checkout): ``OMNIGUARD_EVAL_DATA``, else ``~/.cache/omniguard-plugins/benchmarks``."""
    env = os.environ.get("OMNIGUARD_EVAL_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "omniguard-plugins" / "benchmarks"


def folders_for(names: Iterable[str]) -> list[str]:
    """The set folders that hold the named sets (``all``: every one), in order, each once. A
    derived set (``xstest_audio``) needs its base set's folder."""
    from .datasets import DATASETS

    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    if "all" in wanted:
        return list(dict.fromkeys(info.folder for info in DATASETS.values()))
    out = []
    for name in wanted:
        info = DATASETS.get(name)
        if info is None:
            raise ConfigError(f"unknown set {name!r}: one of {', '.join(DATASETS)}, or all")
        out.append(info.folder)
    return list(dict.fromkeys(out))


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _reason(exc: BaseException) -> str:
    """The first line of the deepest cause (a refused connection, a 404), not the client's wrapper."""
    import httpx

    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    text = str(chain[-1]).strip().splitlines()
    said = f"{type(chain[-1]).__name__}: {text[0]}" if text and text[0] else type(chain[-1]).__name__
    offline = any(isinstance(e, httpx.TransportError) for e in chain)
    return f"the hub is not reachable (offline?): {said}" if offline else said


def fetch(folder: str, source: HubSource, root: Path) -> Path:
    """Fetch one set's files from the hub into ``root/folder`` (in the layout its loader reads)."""
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError:
        raise DownloadError(f"{folder}: huggingface_hub is not installed (pip install huggingface_hub)") from None
    target = root / folder
    staging = root / f".{folder}.downloading"
    shutil.rmtree(staging, ignore_errors=True)
    hub_cache = root / ".hub"
    where = f"{_endpoint() or 'https://huggingface.co'}/datasets/{source.repo}"
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would bury the one line this says
    try:
        for remote, local in source.files.items():
            # one HEAD first, without the client's retries: offline fails at once, not after ~20 s
            get_hf_file_metadata(hf_hub_url(source.repo, remote, repo_type="dataset", revision=source.revision,
                                            endpoint=_endpoint()), endpoint=_endpoint())
            path = hf_hub_download(source.repo, remote, repo_type="dataset", revision=source.revision,
                                   cache_dir=hub_cache, endpoint=_endpoint())
            dest = staging / local
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    except Exception as exc:  # noqa: BLE001 - any failure (offline, 404, gated, disk) is one line for this set
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"could not download {folder} from {where}: {_reason(exc)}") from None
    finally:
        hub_log.setLevel(level)
    target.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = target / f.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download_sets(names: Iterable[str], root: str | os.PathLike[str] | None = None, *,
                  say: Callable[[str], None] = print) -> tuple[list[str], list[str], list[str]]:
    """Fetch the named sets (``all``, or set names, comma lists allowed) into ``root`` (default
    :func:`cache_root`). Returns (fetched folders, folders to get by hand, one-line errors of the
    fetches that failed); ``say`` gets one line per set fetched or to get by hand."""
    base = Path(root).expanduser() if root is not None else cache_root()
    base.mkdir(parents=True, exist_ok=True)
    fetched, by_hand, failed = [], [], []
    for folder in folders_for(names):
        source = HUB_SETS.get(folder)
        if source is None:
            say(f"{folder}: not on the Hugging Face hub in the layout the eval reads; get {BY_HAND[folder]} "
                f"into {base / folder}")
            by_hand.append(folder)
            continue
        try:
            say(f"{folder}: downloaded to {fetch(folder, source, base)}")
            fetched.append(folder)
        except DownloadError as exc:
            failed.append(str(exc))
    return fetched, by_hand, failed
