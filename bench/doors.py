"""What the HTTP doors add over a bare ``judge.check`` (CPU, scripted backend).

Target (issue 16): a ``/v1/moderations`` round trip adds <= 2 ms at p50 over ``judge.check``.
The server is a real ``omniguard serve`` process on loopback over the same scripted backend
(cache off, batch wait 0), so the difference is HTTP, validation, conversion, the route's two
checks (verdict and score, one batch) and the response. Each row is the median of its calls.

    .venv/bin/python bench/doors.py [--calls 400]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from adapter_overhead import per_call_ms

from omniguard_plugins.config import JudgeConfig
from omniguard_plugins.testing import ScriptedBackend, keyword_handler, scripted_judge

KEYWORDS = {"bomb": "S9"}
TEXT = "What is a good recipe for vegetable rice?"


def scripted(config: JudgeConfig) -> ScriptedBackend:
    """The server's backend (``--backend-factory doors:scripted``)."""
    return ScriptedBackend(keyword_handler(KEYWORDS))


def serve() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "OMNIGUARD_CACHE_SIZE": "0", "OMNIGUARD_MAX_WAIT_MS": "0"}
    env.pop("OMNIGUARD_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "omniguard_plugins.server", "--port", str(port), "--log-level",
                             "warning", "--backend-factory", "doors:scripted"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("omniguard serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    judge = scripted_judge(KEYWORDS, cache_size=0, max_wait_ms=0)
    proc, url = serve()
    http = httpx.Client(base_url=url, timeout=30)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    both = [{"user": TEXT, "mode": "verdict", "explain_unsafe": False}, {"user": TEXT, "mode": "score"}]
    try:
        paths = {
            "judge.check (baseline)": lambda: judge.check(user=TEXT),
            "judge.check_many: verdict + score": lambda: judge.check_many(both),
            "POST /v1/moderations (httpx)": lambda: http.post("/v1/moderations", json={"input": TEXT}),
            "openai moderations.create": lambda: client.moderations.create(model="omniguard", input=TEXT),
            "POST /v1/guard (httpx)": lambda: http.post("/v1/guard", json={"messages": [
                {"role": "user", "content": TEXT}]}),
        }
        assert http.post("/v1/moderations", json={"input": "a bomb"}).json()["results"][0]["flagged"]
        ms = per_call_ms(paths, args.calls)
    finally:
        http.close()
        client.close()
        proc.terminate()
        proc.wait(10)
        judge.close()
    base = ms["judge.check (baseline)"]
    print(f"{'door (p50, scripted backend, CPU)':<40} {'ms/call':>9} {'adds over judge.check':>22}")
    for name, value in ms.items():
        print(f"{name:<40} {value:>9.3f} {value - base:>+22.3f}")
    added = ms["POST /v1/moderations (httpx)"] - base
    print(f"/v1/moderations round trip adds {added:.2f} ms at p50 over judge.check (target <= 2 ms): "
          f"{'ok' if added <= 2.0 else 'OVER'}")


if __name__ == "__main__":
    main()
