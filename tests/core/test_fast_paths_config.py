"""The transformers backend's fast paths as one value object, set from YAML, env or the bench
(no model is loaded here: the backend's own behaviour is in test_transformers_fast_paths)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest
from click.testing import CliRunner

from omniguard_plugins import ConfigError, JudgeConfig
from omniguard_plugins.backends.transformers import SWITCHES, BenchKnobs, FastPaths
from omniguard_plugins.cli import main


def test_defaults_match_what_the_backend_always_did() -> None:
    paths = JudgeConfig.load(env={}).fast_paths
    assert paths == FastPaths()
    assert (paths.prefix_cache, paths.media_cache, paths.explain_continue, paths.label_first) == (True,) * 4
    assert (paths.decode_graphs, paths.decode_max_batch, paths.caller_prepare) == (False, 32, "auto")
    assert paths.resolved("cuda").caller_prepare is True and paths.resolved("cpu").caller_prepare is False
    assert BenchKnobs() == BenchKnobs(verdict_max_new_tokens=40, ignore_eos=False, label_from_pair=False)


def test_from_the_environment() -> None:
    spelled = [" decode-graphs, prefix-cache=off ,decode_max_batch=8,caller-prepare=on",
               "decode-graphs,prefix-cache=0,decode-max-batch=8,caller-prepare=yes"]
    one, two = (JudgeConfig.load(env={"OMNIGUARD_FAST_PATHS": value}) for value in spelled)
    assert one.fast_paths == FastPaths(decode_graphs=True, prefix_cache=False, decode_max_batch=8, caller_prepare=True)
    assert one == two and hash(one) == hash(two)


def test_from_yaml_and_overrides(tmp_path) -> None:
    f = tmp_path / "judge.yml"
    f.write_text("judge:\n  fast_paths:\n    media-cache: false\n    decode_max_batch: 16\n")
    cfg = JudgeConfig.load(env={"OMNIGUARD_CONFIG": str(f)})
    assert cfg.fast_paths == FastPaths(media_cache=False, decode_max_batch=16)
    assert cfg.replace(max_batch=4).fast_paths == cfg.fast_paths
    assert JudgeConfig.load(env={}, fast_paths=FastPaths(label_first=False)).fast_paths.label_first is False


def test_the_older_decode_graphs_setting_still_turns_it_on() -> None:
    cfg = JudgeConfig.load(env={"OMNIGUARD_DECODE_GRAPHS": "1"})
    assert cfg.decode_graphs is True and FastPaths.from_config(cfg).decode_graphs is True
    assert FastPaths.from_config(JudgeConfig.load(env={})).decode_graphs is False


@pytest.mark.parametrize("bad", ["nope", "prefix-cache=maybe", "decode-max-batch=0", "decode-max-batch=lots",
                                 "label-first=auto"])
def test_bad_values_are_one_line_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        JudgeConfig.load(env={"OMNIGUARD_FAST_PATHS": bad})
    assert "\n" not in str(info.value) and "fast path" in str(info.value)


def test_typed_values_are_checked_too() -> None:
    with pytest.raises(ConfigError):
        JudgeConfig.load(env={}, fast_paths={"prefix_cache": "sometimes"})
    with pytest.raises(ConfigError):
        FastPaths(media_cache=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        FastPaths(decode_max_batch=True)


def test_frozen_and_switched_by_name() -> None:
    paths = FastPaths()
    with pytest.raises(FrozenInstanceError):
        paths.prefix_cache = False  # type: ignore[misc]
    assert paths.switched("prefix-cache", False) == replace(paths, prefix_cache=False)
    assert paths.switched("decode_graphs", True).is_on("decode-graphs")
    assert set(SWITCHES) >= {"prefix-cache", "caller-prepare", "decode-graphs", "explain-continue", "media-cache"}
    with pytest.raises(ConfigError):
        paths.switched("decode-max-batch", True)


def test_bench_names_an_unknown_fast_path() -> None:
    result = CliRunner().invoke(main, ["bench", "--without", "prefix-cache,warp-drive"])
    assert result.exit_code == 2
    assert "warp-drive" in result.output and "media-cache" in result.output
