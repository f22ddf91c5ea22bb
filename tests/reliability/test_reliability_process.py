"""A real ``omniguard serve`` on loopback against slow, vanishing and hostile clients; the token
from env or file; and logs that never hold media or secrets."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from omniguard_plugins.server.cli import serve
from tests.support.media_makers import png_bytes

GUARD = json.dumps({"messages": [{"role": "user", "content": "hello"}]}).encode()


def raw_request(port: int, body: bytes, *, declared: int | None = None, path: str = "/v1/guard") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared if declared is not None else len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def metric(server, name: str) -> float:
    return sum(v for k, v in server.metrics().items() if k.split("{")[0] == name)


def test_a_slow_loris_body_gets_408_and_the_server_keeps_serving(reliability_server):
    server = reliability_server("--backend-factory", "tests.support.serve_backends:echo", "--body-timeout", "1")
    sock = raw_request(server.port, b'{"mess', declared=len(GUARD))
    started = time.monotonic()
    for byte in b"ages":  # a byte every 0.3 s: each read is quick, the whole body never comes
        time.sleep(0.3)
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
    status, data = read_status(sock)
    sock.close()
    assert status == 408 and b"did not arrive within 1 s" in data
    assert time.monotonic() - started < 5
    assert httpx.post(f"{server.url}/v1/guard", content=GUARD, timeout=10).status_code == 200


def test_a_client_that_hangs_up_mid_body_or_mid_request_costs_the_model_nothing(reliability_server):
    server = reliability_server("--backend-factory", "tests.support.serve_backends:echo", delay_s=1.0)
    sock = raw_request(server.port, GUARD[:10], declared=len(GUARD))  # half a body, then gone
    sock.close()

    with httpx.Client(base_url=server.url, timeout=10) as client:
        import threading

        first: dict[str, int] = {}
        thread = threading.Thread(target=lambda: first.update(code=client.post("/v1/guard", content=GUARD).status_code))
        thread.start()  # holds the model for a second
        time.sleep(0.3)
        gone = raw_request(server.port, json.dumps({"messages": [{"role": "user", "content": "abandoned"}]}).encode())
        time.sleep(0.2)
        gone.close()  # a whole request, then the client leaves before the answer
        thread.join(10)
        assert first["code"] == 200
        time.sleep(0.5)
        assert metric(server, "omniguard_batched_requests_total") == 1  # only the first reached the model
        assert metric(server, "omniguard_dropped_cancelled_total") == 1
        codes = {k: v for k, v in server.metrics().items() if k.startswith("omniguard_http_requests_total")}
        assert sum(v for k, v in codes.items() if "code=499" in k) == 2
        assert client.get("/healthz").json()["status"] == "ready"


def test_a_client_that_hangs_up_mid_stream_leaves_the_server_healthy(reliability_server):
    server = reliability_server("--backend-factory", "tests.support.serve_backends:echo")
    body = json.dumps({"messages": [{"role": "user", "content": "stream me"}], "stream": True}).encode()
    for _ in range(3):
        sock = raw_request(server.port, body, path="/v1/chat/completions")
        status, _ = read_status(sock)
        assert status == 200
        sock.close()  # before reading the events
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", content=body, timeout=10) as resp:
        assert any(line.startswith("data: [DONE]") for line in resp.iter_lines())
    assert httpx.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ready"


@pytest.fixture
def served(monkeypatch):
    """Run ``omniguard serve`` in process with uvicorn replaced: returns the app it would serve."""
    apps = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    monkeypatch.delenv("OMNIGUARD_TOKEN", raising=False)

    def run(*args: str, env: dict[str, str] | None = None):
        result = CliRunner().invoke(serve, ["--backend-factory", "tests.support.serve_backends:echo", *args],
                                    env=env or {})
        return result, (apps[-1] if apps else None)

    return run


def test_the_token_comes_from_the_environment_or_a_file_and_argv_is_warned_about(served, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# one per client\nclient-one-secret\n\nclient-two-secret\n")
    for args, env, good in [
        ((), {"OMNIGUARD_TOKEN": "from-the-environment"}, ["from-the-environment"]),
        (("--token-file", str(tokens)), None, ["client-one-secret", "client-two-secret"]),
    ]:
        result, app = served(*args, env=env)
        assert result.exit_code == 0, result.output
        assert "visible to other users" not in result.output
        with TestClient(app) as c:
            assert c.post("/v1/guard", content=GUARD).status_code == 401
            wrong = {"Authorization": "Bearer wrong-token"}
            assert c.post("/v1/guard", content=GUARD, headers=wrong).status_code == 401
            for token in good:
                auth = {"Authorization": f"Bearer {token}"}
                assert c.post("/v1/guard", content=GUARD, headers=auth).status_code == 200
    result, _ = served("--token", "on-the-command-line")
    assert "visible to other users (ps)" in result.output


@pytest.mark.parametrize(("content", "says"), [
    ("", "holds no token"), ("# only a comment\n", "holds no token"), ("short\n", "8 or more characters"),
])
def test_a_bad_token_file_is_a_one_line_usage_error(served, tmp_path, content, says):
    path = tmp_path / "tokens"
    path.write_text(content)
    result, app = served("--token-file", str(path))
    assert result.exit_code == 2 and says in result.output and app is None
    assert "Traceback" not in result.output


def test_the_tokens_are_compared_in_constant_time(monkeypatch):
    """Every accepted token is compared with hmac.compare_digest, whichever one matches."""
    from omniguard_plugins.server import gate
    from omniguard_plugins.testing import scripted_judge

    compared = []
    real = gate.hmac.compare_digest
    monkeypatch.setattr(gate.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    from omniguard_plugins.server import create_app

    judge = scripted_judge([], cache_size=0)
    with TestClient(create_app(judge, tokens=["first-token-1", "second-token-2"])) as c:
        assert c.post("/v1/guard", content=GUARD, headers={"Authorization": "Bearer first-token-1"}).status_code == 200
    assert len(compared) == 2  # the second token was compared too, though the first matched
    judge.close()


def test_no_log_record_at_any_level_holds_media_bytes_or_a_token(caplog):
    from omniguard_plugins.server import create_app
    from omniguard_plugins.testing import scripted_judge

    token = "very-secret-token-value"
    png = base64.b64encode(png_bytes()).decode()
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
    judge = scripted_judge(["bomb"], cache_size=0)
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(judge, token=token)) as c:
        auth = {"Authorization": f"Bearer {token}"}
        for data in (png, corrupt):
            image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
            c.post("/v1/guard", json={"messages": [{"role": "user", "content": [image]}], "extra_field": data},
                   headers=auth)
            c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
                {"type": "text", "text": "x"}, image]}]}, headers=auth)
            c.post("/v1/guard", json={"messages": [{"role": "user", "content": [
                {"type": data[:5000], "text": "x"}]}]}, headers=auth)
        c.post("/v1/guard", content=GUARD, headers={"Authorization": f"Bearer {token}x"})
    judge.close()
    logged = caplog.text
    assert logged  # the run did log (unknown fields, failed checks), so the check means something
    assert token not in logged
    for data in (png, corrupt):
        assert data[:40] not in logged and data[-40:] not in logged


def test_a_check_that_fails_on_client_data_logs_and_answers_a_short_reason(caplog):
    """In process (NeMo, LangChain): a part whose type is a client's base64 must not be echoed
    whole into the verdict or the log."""
    from omniguard_plugins.openai_messages import conversation_from_openai
    from omniguard_plugins.testing import scripted_judge

    blob = base64.b64encode(png_bytes() * 20).decode()
    judge = scripted_judge([], cache_size=0)
    caplog.set_level(logging.DEBUG)
    verdict = judge.check(lambda: conversation_from_openai([{"role": "user", "content": [{"type": blob}]}]))
    judge.close()
    assert verdict.safe is False and verdict.error.startswith("content:")
    assert len(verdict.error) < 300 and blob[:40] not in caplog.text
