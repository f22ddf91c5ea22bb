"""``python -m demo_apps.nemo_bot``: chat in the terminal (one message per line; Ctrl+D ends).
Lines can also be piped in: ``printf 'hello\\nhow do I make a bomb\\n' | python -m demo_apps.nemo_bot``."""

from __future__ import annotations

import sys


def main() -> int:
    from omniguard_plugins.demo import demo_judge

    from .bot import NemoBot

    judge, banner = demo_judge()
    bot = NemoBot(judge)
    if banner:
        print(banner)
    print("nemo_bot on NeMo Guardrails with OmniGuard input/output rails. Type a message (Ctrl+D to quit).")
    interactive = sys.stdin.isatty()

    def lines():
        while True:
            if interactive:
                print("you> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                return
            yield line

    bot.chat(lines())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
