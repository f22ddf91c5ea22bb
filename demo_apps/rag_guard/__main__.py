"""``python -m demo_apps.rag_guard [--host 127.0.0.1] [--port 7861] [--ask QUESTION ...]``

Serves the page, or with ``--ask`` prints each question's report (nodes kept and dropped, and why)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_apps.rag_guard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7861)
    # repeatable and multi-valued: `--ask A --ask B` and `--ask A B` both ask A then B
    parser.add_argument("--ask", nargs="+", action="extend", metavar="QUESTION",
                        help="print the reports instead of serving the page (repeatable)")
    args = parser.parse_args(argv)

    from omniguard_plugins.demo import demo_judge

    from .app import RagGuard, create_app

    judge, banner = demo_judge()
    rag = RagGuard(judge)
    if args.ask:
        if banner:
            print(banner)
        for question in args.ask:
            print("\n".join(rag.ask(question).lines()) + "\n")
        return 0
    import uvicorn

    print(f"rag_guard is running: open http://{args.host}:{args.port}/  (Ctrl+C to stop)", flush=True)
    uvicorn.run(create_app(rag, banner), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
