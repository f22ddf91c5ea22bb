"""``omniguard``: check content from the shell, serve the judge, run the benchmark.

Exit codes of ``omniguard check``: 0 safe, 1 unsafe, 2 error (including a failed check that
the default policy blocked: the content was not judged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .errors import ConfigError, ModelLoadError, OmniGuardError

__all__ = ["main"]

_MODES = click.Choice(["verdict", "critique", "score"])


def _judge_settings(model: str | None, url: str | None, device: str | None, on_error: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if model:
        settings["model"] = model
    if url:
        settings["base_url"] = url
    if device:
        settings["device"] = device
    if on_error:
        settings["on_error"] = on_error
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omniguard-plugins")
def main() -> None:
    """OmniGuard: one omni-modal guard judge for text, images, audio and video."""
    # a command-line tool shows its own output, not transformers' config chatter
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


_FILE = click.Path(dir_okay=False)
_MODEL_HELP = "Checkpoint id or folder [env OMNIGUARD_MODEL]."
_URL_HELP = "OpenAI-compatible judge endpoint(s) [env OMNIGUARD_URL]."


@main.command()
@click.option("--text", "-t", "texts", multiple=True, help="User text to judge (repeatable).")
@click.option("--image", "-i", "images", multiple=True, type=_FILE, help="Image file (repeatable).")
@click.option("--audio", "-a", "audios", multiple=True, type=_FILE, help="Audio file (repeatable).")
@click.option("--video", "videos", multiple=True, type=_FILE, help="Video file (repeatable).")
@click.option("--response", "-r", default=None,
              help="The assistant's answer: judges it (output rail), in the context of the user turn if one is given.")
@click.option("--mode", type=_MODES, default=None,
              help="verdict (fast, default), critique (with reasoning) or score (P(unsafe)).")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML policy file.")
@click.option("--localize", is_flag=True, default=None,
              help="Say where an unsafe verdict's harm is: the part, the text quoted, the time as mm:ss.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--model", envvar="OMNIGUARD_MODEL", default=None, help=_MODEL_HELP)
@click.option("--url", envvar="OMNIGUARD_URL", default=None, help=_URL_HELP)
@click.option("--device", envvar="OMNIGUARD_DEVICE", default=None, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--on-error", type=click.Choice(["block", "allow", "raise"]), default=None,
              help="What a failed check means.")
def check(
    texts: tuple[str, ...],
    images: tuple[str, ...],
    audios: tuple[str, ...],
    videos: tuple[str, ...],
    response: str | None,
    mode: str | None,
    policy_file: str | None,
    localize: bool | None,
    as_json: bool,
    model: str | None,
    url: str | None,
    device: str | None,
    on_error: str | None,
) -> None:
    """Judge one turn. Exit 0 safe, 1 unsafe, 2 error. Parts are numbered from 0 in the order
    --text, --image, --audio, --video (--response alone when it is given)."""
    from .content import Audio, Image, Text, Video
    from .judge import OmniGuard
    from .policy import Policy

    parts: list[Any] = [Text(t) for t in texts]
    parts += [Image(Path(p), name=Path(p).name) for p in images]
    parts += [Audio(Path(p), name=Path(p).name) for p in audios]
    parts += [Video(Path(p), name=Path(p).name) for p in videos]
    if not parts and response is None:
        raise click.UsageError("nothing to check: give --text, --image, --audio, --video or --response")
    try:
        settings = _judge_settings(model, url, device, on_error)
        if policy_file:
            try:
                settings["policy"] = Policy.from_yaml(Path(policy_file))
            except ConfigError as exc:  # exit 2 with one line: 1 would read as "unsafe"
                raise ConfigError(f"--policy {Path(policy_file).name}: {exc}") from None
        judge = OmniGuard(**settings)
        judge.load()
        verdict = judge.check(user=parts or None, assistant=response, mode=mode,  # type: ignore[arg-type]
                              localize=localize or None)
    except (ModelLoadError, ConfigError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OmniGuardError as exc:  # on_error="raise"
        click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    stage = "output" if response is not None else "input"
    _print_verdict(verdict, as_json, stage)
    if not as_json:
        judged = [Text(response)] if response is not None else parts
        for line in evidence_lines(verdict, judged):
            click.echo(line)
    judge.close()
    sys.exit(2 if verdict.error else (0 if verdict.safe else 1))


def _print_verdict(verdict: Any, as_json: bool, stage: Any = None) -> None:
    if as_json:  # the verdict summary: the same JSON every door sends
        from .doors import summarize

        click.echo(json.dumps(summarize(verdict, stage).to_json(), indent=2))
        return
    label = verdict.label.upper()
    color = {"SAFE": "green", "UNSAFE": "red"}.get(label, "yellow")
    took = f"  ({verdict.direction}, {verdict.mode}, {verdict.latency_ms:.0f} ms)"
    click.echo(click.style(label, fg=color, bold=True) + took)
    for cat in verdict.categories:
        click.echo(f"  {cat.code}: {cat.name}")
    if verdict.score is not None:
        click.echo(f"  P(unsafe) = {verdict.score:.3f}")
    if verdict.error:
        click.echo(f"  error: {verdict.error} -> {'allowed' if verdict.safe else 'blocked'}")
    if verdict.critique:
        click.echo(f"  critique: {verdict.critique}")
    if verdict.details.get("window") is not None:
        click.echo(f"  unsafe audio window: #{verdict.details['window']} {verdict.details.get('window_s')}")


def mmss(seconds: float) -> str:
    """``75.5`` -> ``01:15.5``; whole seconds without a fraction (``01:15``)."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    text = f"{int(minutes):02d}:{rest:04.1f}"
    return text[:-2] if text.endswith(".0") else text


def evidence_lines(verdict: Any, parts: list[Any], quote_chars: int = 160) -> list[str]:
    """Where the harm is, one line per evidence item: text spans quoted, times as mm:ss."""
    lines = []
    for e in verdict.evidence:
        part = parts[e.part] if 0 <= e.part < len(parts) else None
        name = getattr(part, "name", None)
        where = f"  evidence: part {e.part} ({e.kind}{', ' + name if name else ''})"
        if e.chars is not None and part is not None and hasattr(part, "text"):
            quoted = part.text[e.chars[0] : e.chars[1]]
            quoted = quoted if len(quoted) <= quote_chars else quoted[: quote_chars - 1] + "…"
            where += f" chars {e.chars[0]}-{e.chars[1]}: {json.dumps(quoted, ensure_ascii=False)}"
        if e.seconds is not None:
            where += f" {mmss(e.seconds[0])}-{mmss(e.seconds[1])}"
        if e.categories:
            where += f" [{', '.join(e.categories)}]"
        if e.joint:
            where += f" (unsafe only together with part {', '.join(map(str, e.joint))})"
        if e.capped:
            where += " (narrowing stopped at the cap)"
        lines.append(where)
    return lines


@main.command()
@click.option("--model", envvar="OMNIGUARD_MODEL", default=None, help=_MODEL_HELP)
@click.option("--url", envvar="OMNIGUARD_URL", default=None, help=_URL_HELP)
def demo(model: str | None, url: str | None) -> None:
    """Judge the bundled sample media (falls back to a tiny plumbing model offline)."""
    from .demo import run_demo

    sys.exit(run_demo(model=model, url=url))


def _add_optional_commands() -> None:
    try:
        from .server.cli import serve
    except ImportError:  # the [serve] extra is not installed
        pass
    else:
        main.add_command(serve)
    from .bench.cli import bench

    main.add_command(bench)


_add_optional_commands()

from .eval.cli import eval_command, policy_group  # noqa: E402

main.add_command(eval_command)
main.add_command(policy_group)

if __name__ == "__main__":  # pragma: no cover
    main()
