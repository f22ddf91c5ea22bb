"""The local TTS of the voice demo: espeak-ng (Debian's ``espeak-ng``), no model, no network.

The tests use the same voice for the user's speech, so what they feed the guard is real speech.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

__all__ = ["ESPEAK", "speak", "speak_wav"]

#: the espeak-ng binary, or None when it is not installed (``apt-get install -y espeak-ng``)
ESPEAK = shutil.which("espeak-ng")


def speak_wav(text: str, *, voice: str = "en", words_per_minute: int = 170) -> bytes:
    """``text`` spoken by espeak-ng, as a WAV file (16-bit mono, 22050 Hz)."""
    if ESPEAK is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    done = subprocess.run([ESPEAK, "--stdout", "-v", voice, "-s", str(words_per_minute), text],
                          capture_output=True, check=True, timeout=30)
    return done.stdout


def speak(text: str, **options: object) -> tuple[bytes, int]:
    """``text`` spoken by espeak-ng, as raw 16-bit mono PCM and its sample rate."""
    with wave.open(io.BytesIO(speak_wav(text, **options)), "rb") as w:  # type: ignore[arg-type]
        return w.readframes(w.getnframes()), w.getframerate()
