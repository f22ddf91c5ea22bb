"""``omniguard serve`` as a click command (the lead adds it to the ``omniguard`` group)."""

from __future__ import annotations

from click.testing import CliRunner

from omniguard_plugins.server.cli import serve


def test_help_lists_the_options_people_need():
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--model", "--token", "--max-body-bytes", "--base-url",
                   "--request-timeout", "--backend-factory", "OMNIGUARD_TOKEN"):
        assert option in result.output


def test_a_bad_backend_factory_is_a_clear_usage_error():
    result = CliRunner().invoke(serve, ["--backend-factory", "no_such_module_here:make"])
    assert result.exit_code == 2
    assert "cannot load no_such_module_here:make" in result.output

    result = CliRunner().invoke(serve, ["--backend-factory", "missing-colon"])
    assert result.exit_code == 2 and "MODULE:FUNCTION" in result.output


def test_an_invalid_setting_is_a_one_line_error():
    result = CliRunner().invoke(serve, ["--max-batch", "0", "--backend-factory", "tests.support.serve_backends:echo"])
    assert result.exit_code == 1
    assert "max_batch must be at least 1" in result.output
