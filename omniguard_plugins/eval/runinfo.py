"""What a run was made with: the model as it answered, the code, the machine, the data.

``run.json`` is written before the first item is judged and checked when a run folder is
resumed, so a folder never mixes two measurements. With ``--url`` the model is the one the
endpoint reports on ``/v1/models`` (never the client's default name); in process it is the
checkpoint folder or hub id, with the hub commit or a hash of the folder's config and weight
sizes as its revision.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config import checkpoint_revision, is_tiny_checkpoint
from ..errors import ConfigError

__all__ = ["TINY_NOTE", "check_same_run", "data_checksums", "environment", "model_identity", "served_models"]

TINY_NOTE = "the tiny test checkpoint answered: these numbers mean nothing about real safety"
#: what must match for a resumed folder to stay one measurement
SAME_RUN_KEYS = ("mode", "policy", "model", "threshold", "seed", "limit", "sets", "localize")
_LIBRARIES = ("numpy", "torch", "transformers", "httpx", "matplotlib")
_TINY_NAME = re.compile(r"^tiny-(trained|random)-[0-9a-f]{12}$")


def environment() -> dict[str, Any]:
    """Package version and commit, Python, library versions, the machine."""
    from .._version import __version__

    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"package": "omniguard-plugins", "version": __version__, "commit": _commit(),
            "python": sys.version.split()[0], "libraries": versions, "hardware": _hardware()}


def _commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() or None
    return f"{commit}+dirty" if commit and dirty.stdout.strip() else commit


def _hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # only when a backend imported it: never load torch for this
    if torch is not None:
        try:
            if torch.cuda.is_available():
                out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - a broken driver must not stop a report
            pass
    return out


def served_models(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The ``data`` of ``GET <first endpoint>/v1/models``: what the server says it serves."""
    import httpx

    url = base_url.split(",")[0].strip().rstrip("/")
    url = url if url.endswith("/v1") else url + "/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(url + "/models", headers=headers, timeout=timeout_s)
        resp.raise_for_status()
        data = resp.json().get("data")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ConfigError(f"could not read {url}/models to name the served model: {exc}".splitlines()[0]) from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{url}/models lists no model: cannot name what will answer")
    return [dict(d) for d in data if isinstance(d, Mapping) and d.get("id")]


def model_identity(config: Any, served: list[dict[str, Any]] | None = None, *, judge_alias: str = "omniguard-judge",
                   chosen: str | None = None) -> dict[str, Any]:
    """``{"id", "revision", "source", "tiny"}`` for the model that answers the checks.

    Served: the entry the client asks for (``chosen``), else the first one that is not the
    server's Llama-Guard-style alias; its ``revision`` (and ``root``) when the server reports
    them. In process: the checkpoint as configured."""
    if served is not None:
        names = [str(d["id"]) for d in served]
        entry = next((d for d in served if d["id"] == chosen), None) or next(
            (d for d in served if d["id"] != judge_alias), served[0])
        model_id = str(entry["id"])
        tiny = bool(entry.get("tiny")) or bool(_TINY_NAME.match(model_id)) or is_tiny_checkpoint(entry.get("root"))
        return {"id": model_id, "revision": entry.get("revision"), "root": entry.get("root"), "source": "served",
                "listed": names, "tiny": tiny}
    model = str(config.model)
    return {"id": model, "revision": checkpoint_revision(model), "source": "local", "tiny": is_tiny_checkpoint(model)}


def data_checksums(folders: Mapping[str, Path | None]) -> dict[str, str | None]:
    """Per set, a sha256 over the relative paths and bytes of every file in its folder (a
    golden file: its bytes); None where there is no folder to hash."""
    out: dict[str, str | None] = {}
    cache: dict[Path, str] = {}
    for name, folder in folders.items():
        if folder is None or not folder.exists():
            out[name] = None
            continue
        if folder not in cache:
            cache[folder] = _hash_tree(folder)
        out[name] = cache[folder]
    return out


def _hash_tree(root: Path) -> str:
    h = hashlib.sha256()
    files: Iterable[Path] = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def check_same_run(path: Path, info: Mapping[str, Any]) -> None:
    """Refuse to resume a folder made with other settings, in one line naming the first difference."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{path} is not readable JSON: use another --out folder (or delete that one)") from None
    for key in SAME_RUN_KEYS:
        if key not in info or key not in old:
            continue
        was, now = old.get(key), info.get(key)
        if key == "model":
            was, now = (was or {}).get("id") if isinstance(was, dict) else was, (now or {}).get("id")
        if key == "sets" and isinstance(was, list) and isinstance(now, list) and set(was) != set(now):
            there, here = sorted(set(was) - set(now)), sorted(set(now) - set(was))
            raise ConfigError(f"{path.parent} holds a run of other sets (only there: {', '.join(there) or 'none'}; "
                              f"only here: {', '.join(here) or 'none'}): use another --out folder (or delete that "
                              "one) to start afresh")
        if key == "sets":
            continue  # the same sets named in another order: the same measurement
        if was != now:
            raise ConfigError(f"{path.parent} holds a run with {key}={was!r}, not {now!r}: "
                              "use another --out folder (or delete that one) to start afresh")
