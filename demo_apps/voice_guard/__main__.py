"""``python -m demo_apps.voice_guard [--host 127.0.0.1] [--port 7861]``"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_apps.voice_guard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args(argv)

    import uvicorn

    from .app import create_app

    app = create_app()  # loads the judge now, so the first turn does not wait for it
    print(f"voice_guard is running: open http://{args.host}:{args.port}/ and allow the microphone (Ctrl+C to stop)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
