"""Derived media: audio and video made from the labelled text and images, cached on disk.

No labelled audio or video safety set is available offline, so the audio and video paths are
measured end to end on renditions of real labelled items: speech from Debian's ``espeak-ng``,
clips from the ``imageio-ffmpeg`` binary (a still clip, or an unsafe image shown for one second
inside a longer safe clip, which tests frame sampling). Files are addressed by the hash of what
made them, so a second run (or a resumed one) makes nothing again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError

__all__ = ["MediaMaker", "default_cache_dir", "espeak_available"]

_RECIPE = "1"  # bump when a recipe changes, so cached files are made again
#: frames a still image stays on screen per second of clip; the judge samples at 2 fps by default
_FPS = 4
_SIDE = 448
_TIMEOUT_S = 120.0


def default_cache_dir() -> Path:
    """``OMNIGUARD_EVAL_CACHE``, else ``~/.cache/omniguard-plugins/eval``."""
    return Path(os.environ.get("OMNIGUARD_EVAL_CACHE") or Path.home() / ".cache" / "omniguard-plugins" / "eval")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class MediaMaker:
    """Makes (or finds in its cache) speech WAVs and MP4 clips."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, voice: str = "en", wpm: int = 160,
                 max_words: int = 60) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.voice = voice
        self.wpm = wpm
        #: speech is cut to this many words (~20 s at 160 wpm), under the judge's 30 s audio window
        self.max_words = max_words

    def spoken_text(self, text: str) -> str:
        words = text.split()
        return " ".join(words[: self.max_words])

    def speech(self, text: str) -> Path:
        """A WAV of ``text`` read by espeak-ng (cut to ``max_words``)."""
        spoken = self.spoken_text(text)
        if not spoken:
            raise ConfigError("nothing to speak: the text is empty")
        target = self._path("speech", ".wav", _RECIPE, self.voice, str(self.wpm), spoken)
        if target.exists():
            return target
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise ConfigError("espeak-ng is not installed; the spoken sets need it (apt-get install espeak-ng)")
        self._make(target, [exe, "-v", self.voice, "-s", str(self.wpm), "--stdin", "-w", "{out}"], stdin=spoken)
        return target

    def still_video(self, image: str | os.PathLike[str], seconds: float = 3.0) -> Path:
        """An MP4 showing ``image`` for ``seconds``."""
        return self.sequence_video([(Path(image), seconds)])

    def flash_video(self, background: str | os.PathLike[str], flash: str | os.PathLike[str], *,
                    before_s: float = 2.0, flash_s: float = 1.0, after_s: float = 2.0) -> Path:
        """``background`` for ``before_s``, ``flash`` for ``flash_s``, ``background`` again for ``after_s``."""
        return self.sequence_video([(Path(background), before_s), (Path(flash), flash_s), (Path(background), after_s)])

    def sequence_video(self, shots: Sequence[tuple[Path, float]]) -> Path:
        """An MP4 of still images, each shown for its seconds, fitted into a 448x448 frame."""
        if not shots:
            raise ConfigError("a clip needs at least one image")
        key = [_RECIPE, str(_FPS), str(_SIDE)]
        for path, seconds in shots:
            if not path.is_file():
                raise ConfigError(f"no such image for a derived clip: {path}")
            key += [hashlib.sha256(path.read_bytes()).hexdigest(), f"{seconds:.3f}"]
        target = self._path("video", ".mp4", *key)
        if target.exists():
            return target
        cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
        for path, seconds in shots:
            cmd += ["-loop", "1", "-framerate", str(_FPS), "-t", f"{seconds:.3f}", "-i", str(path)]
        fit = (f"scale={_SIDE}:{_SIDE}:force_original_aspect_ratio=decrease,"
               f"pad={_SIDE}:{_SIDE}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={_FPS},format=yuv420p")
        chains = ";".join(f"[{i}:v]{fit}[v{i}]" for i in range(len(shots)))
        joined = "".join(f"[v{i}]" for i in range(len(shots)))
        cmd += ["-filter_complex", f"{chains};{joined}concat=n={len(shots)}:v=1:a=0[out]", "-map", "[out]",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "{out}"]
        self._make(target, cmd)
        return target

    # ------------------------------------------------------------------ cache plumbing

    def _path(self, kind: str, suffix: str, *key: str) -> Path:
        digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:24]
        return self.cache_dir / kind / f"{digest}{suffix}"

    def _make(self, target: Path, cmd: list[str], stdin: str | None = None) -> None:
        """Run ``cmd`` writing to a temporary file, then move it into place (parallel runs are safe)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".making-", suffix=target.suffix, dir=target.parent)
        os.close(fd)
        try:
            run = [tmp if part == "{out}" else part for part in cmd]
            proc = subprocess.run(run, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
            if proc.returncode != 0 or os.path.getsize(tmp) == 0:
                detail = (proc.stderr or "no output").strip().splitlines()
                raise ConfigError(f"{Path(cmd[0]).name} failed making {target.name}: {detail[-1] if detail else ''}")
            os.replace(tmp, target)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{Path(cmd[0]).name} took over {_TIMEOUT_S:.0f} s making {target.name}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
