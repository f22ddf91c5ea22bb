from __future__ import annotations

import pytest

from omniguard_plugins import ConfigError, JudgeConfig


def test_precedence_defaults_yaml_env_args(tmp_path) -> None:
    f = tmp_path / "judge.yml"
    f.write_text("judge:\n  model: from-yaml\n  max_batch: 8\n  mode: critique\n  allow_urls: true\n")
    env = {"OMNIGUARD_CONFIG": str(f), "OMNIGUARD_MAX_BATCH": "12", "OMNIGUARD_ON_ERROR": "allow"}
    cfg = JudgeConfig.load(env=env, mode="score")
    assert (cfg.model, cfg.max_batch, cfg.mode, cfg.on_error) == ("from-yaml", 12, "score", "allow")
    assert cfg.media.allow_urls is True


def test_env_policy_file_and_backend_auto(tmp_path) -> None:
    pol = tmp_path / "p.yml"
    pol.write_text("categories: [Spam, Scams]\n")
    cfg = JudgeConfig.load(env={"OMNIGUARD_POLICY": str(pol), "OMNIGUARD_URL": "http://127.0.0.1:9/v1"})
    assert [c.name for c in cfg.policy] == ["Spam", "Scams"]
    assert cfg.resolved_backend == "openai"
    assert JudgeConfig.load(env={}).resolved_backend == "transformers"


@pytest.mark.parametrize(
    "bad", [{"mode": "fast"}, {"on_error": "ignore"}, {"max_batch": 0}, {"threshold": 2}, {"colour": "red"},
            {"max_batch": "many"}],
)
def test_invalid_settings_raise_config_error(bad) -> None:
    with pytest.raises(ConfigError):
        JudgeConfig.load(env={}, **bad)


def test_missing_config_file_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OMNIGUARD_CONFIG"):
        JudgeConfig.load(env={"OMNIGUARD_CONFIG": "/nonexistent/judge.yml"})


def test_configs_are_hashable_for_the_shared_registry() -> None:
    assert hash(JudgeConfig.load(env={})) == hash(JudgeConfig.load(env={}))


def test_decode_graphs_is_off_unless_asked_and_reaches_the_backend(tiny_checkpoint_path) -> None:
    from omniguard_plugins.backends.transformers import TransformersBackend

    assert JudgeConfig.load(env={}).decode_graphs is False
    cfg = JudgeConfig.load(env={"OMNIGUARD_DECODE_GRAPHS": "1"}, model=str(tiny_checkpoint_path), device="cpu")
    assert cfg.decode_graphs is True
    assert TransformersBackend.from_config(cfg).fast_paths.decode_graphs is True
