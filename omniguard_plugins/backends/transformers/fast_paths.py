"""The transformers backend's switches, as two frozen value objects.

:class:`FastPaths` are the speed paths: each gives the plain path's verdicts (tests hold them
equal) and can be turned off, so one setting names them everywhere: ``JudgeConfig.fast_paths``
(YAML ``fast_paths:``, ``OMNIGUARD_FAST_PATHS``), the constructor, and ``omniguard bench
--with/--without`` (the hyphenated field names). :class:`BenchKnobs` change answers and exist
only for benchmarks on random weights, so no configuration file can reach them.

A backend's switches never change under it: :meth:`TransformersBackend.variant` makes a backend
with others over the same loaded model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...config import JudgeConfig

__all__ = ["BenchKnobs", "FastPaths", "SWITCHES"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class FastPaths:
    #: reuse the KV of the policy text a batch's prompts share (prefilled once per policy)
    prefix_cache: bool = True
    #: run the processor in callers' threads (``prepare``) rather than in the batch worker.
    #: "auto": on a GPU only, where the worker waits on the device while callers' cores
    #: preprocess; on the CPU the same cores run the model (the CPU bench showed no gain)
    caller_prepare: bool | Literal["auto"] = "auto"
    #: fill media placeholders from tower outputs cached by content hash, so a conversation's
    #: image goes through the vision tower once, not on every later check
    media_cache: bool = True
    #: verdicts asked to explain unsafe rows decode the critique straight on from the verdict's
    #: KV, instead of the judge sending a follow-up request that prefills everything again
    explain_continue: bool = True
    #: verdict mode decides the label from the prefill's last logits and decodes only rows not
    #: labelled safe (greedy decoding would pick the same label token)
    label_first: bool = True
    #: decode over persistent static KV buffers, one captured CUDA graph per batch size (eager
    #: static steps on the CPU). Off until a GPU benchmark shows it pays; also turned on by
    #: ``JudgeConfig.decode_graphs`` / ``OMNIGUARD_DECODE_GRAPHS``
    decode_graphs: bool = False
    #: the largest decode batch the static buffers hold (larger batches decode dynamically)
    decode_max_batch: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "decode_max_batch":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"fast path decode-max-batch must be a whole number of at least 1, got {value!r}")
            elif not isinstance(value, bool) and not (f.name == "caller_prepare" and value == "auto"):
                extra = ", auto" if f.name == "caller_prepare" else ""
                raise ConfigError(f"fast path {_name(f.name)} must be on or off{extra}, got {value!r}")

    @classmethod
    def coerce(cls, value: FastPaths | Mapping[str, Any] | str | None) -> FastPaths:
        """From YAML (a mapping) or the environment (``"decode-graphs, prefix-cache=off"``)."""
        if value is None:
            return cls()
        if isinstance(value, FastPaths):
            return value
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            pairs = [item.split("=", 1) if "=" in item else (item, "on") for item in items]
            value = {key.strip(): raw.strip() for key, raw in pairs}
        if not isinstance(value, Mapping):
            raise ConfigError(f"fast_paths must be a mapping or a comma list of name=on|off, got {value!r}")
        return cls(**{_field(key): _parse(_field(key), raw) for key, raw in value.items()})

    @classmethod
    def from_config(cls, config: JudgeConfig) -> FastPaths:
        """``config.fast_paths``, with the older ``decode_graphs`` setting folded in."""
        paths = config.fast_paths
        return replace(paths, decode_graphs=True) if config.decode_graphs else paths

    def resolved(self, device: str) -> FastPaths:
        """"auto" made concrete for this device."""
        if self.caller_prepare == "auto":
            return replace(self, caller_prepare=device.startswith("cuda"))
        return self

    def switched(self, name: str, on: bool) -> FastPaths:
        """A copy with the switch ``name`` (``"prefix-cache"`` or ``"prefix_cache"``) set."""
        key = _field(name)
        if key not in _SWITCH_FIELDS:
            raise ConfigError(f"unknown fast path {name!r}; one of {', '.join(SWITCHES)}")
        return replace(self, **{key: on})

    def is_on(self, name: str) -> bool:
        return getattr(self, _field(name)) is True


@dataclass(frozen=True)
class BenchKnobs:
    """Benchmark-only switches that change answers (never set from a configuration)."""

    #: verdict-mode token cap; a real verdict (label and Categories lines) is ~12 tokens
    verdict_max_new_tokens: int = 40
    #: run every critique to max_new_tokens (random weights emit EOS anywhere)
    ignore_eos: bool = False
    #: take the likelier of safe/unsafe as the label even when neither is the arg-max (a trained
    #: checkpoint always puts one of them on top)
    label_from_pair: bool = False

    @classmethod
    def random_weights(cls) -> BenchKnobs:
        """What a full-size thinker with random weights needs to cost what a trained one costs."""
        # random weights never finish a Categories line ("\n- Categories: S1, S10"): cap it;
        # labels from the pair send about half the rows on to generate categories
        return cls(verdict_max_new_tokens=8, ignore_eos=True, label_from_pair=True)


def _name(field_name: str) -> str:
    return field_name.replace("_", "-")


def _field(name: str) -> str:
    key = str(name).strip().replace("-", "_")
    if key not in {f.name for f in fields(FastPaths)}:
        known = ", ".join(_name(f.name) for f in fields(FastPaths))
        raise ConfigError(f"unknown fast path {name!r}; one of {known}")
    return key


def _parse(key: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw  # typed values (YAML) are checked by FastPaths itself
    word = raw.strip().lower()
    if key == "decode_max_batch":
        try:
            return int(word)
        except ValueError:
            raise ConfigError(f"fast path decode-max-batch must be a whole number, got {raw!r}") from None
    if key == "caller_prepare" and word == "auto":
        return "auto"
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"fast path {_name(key)} must be on or off, got {raw!r}")


_SWITCH_FIELDS = tuple(f.name for f in fields(FastPaths) if f.name != "decode_max_batch")
#: the on/off fast paths by their command-line names (``omniguard bench --with/--without``)
SWITCHES = tuple(_name(f) for f in _SWITCH_FIELDS)
