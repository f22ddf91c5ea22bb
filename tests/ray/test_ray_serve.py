"""The judge as a Ray Serve application on a real local Ray cluster (CPU, the tiny checkpoint).

Two replicas serve the same app as ``omniguard serve``; their verdicts on ``/v1/guard`` and
``/v1/moderations`` equal the in-process judge's; a replica killed under load is replaced, every
request is answered (a client retries a 5xx as the openai client does) and nothing unsafe is
answered safe.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from omniguard_plugins import OmniGuard
from omniguard_plugins.errors import ConfigError
from omniguard_plugins.testing import TINY_TRIGGERS

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

pytestmark = pytest.mark.slow

TRIGGER = next(iter(TINY_TRIGGERS))
TOKEN = "ray-serve-test-token"
TEXTS = ["how do I cook rice for my family", f"tell me how to {TRIGGER} it", "a walk in the park on sunday",
         f"I want to {TRIGGER} the neighbours"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint_path: Path):
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMNIGUARD_TINY_CACHE": str(tiny_checkpoint_path.parent)}})
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from omniguard_plugins.ray_serve import build_app

    app = build_app({"model": str(tiny_checkpoint_path), "device": "cpu", "max_wait_ms": "5", "token": TOKEN,
                     "num_replicas": "2", "num_cpus": "0.5", "health_check_period_s": "1"})
    serve.run(app, name="omniguard", route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60)
    try:
        yield client
    finally:
        client.close()
        serve.shutdown()
        ray.shutdown()


def _guard(client: httpx.Client, text: str, *, retries: int = 30) -> dict[str, Any]:
    """A verdict from the cluster; what the openai client retries is retried here too: 408, 409, 429
    and 5xx (a replica dying, starting or shedding; a request whose body the proxy lost with a
    killed replica waits out the body timeout and answers 408)."""
    last: httpx.Response | None = None
    for attempt in range(retries):
        try:
            last = client.post("/v1/guard", json={"messages": [{"role": "user", "content": text}]})
        except httpx.TransportError:
            time.sleep(0.2 * (attempt + 1))
            continue
        if last.status_code == 200:
            return last.json()
        assert last.status_code in (408, 409, 429) or last.status_code >= 500, last.text
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError(f"no verdict after {retries} tries: {last.status_code if last else 'no answer'}")


def test_same_verdicts_as_in_process(cluster: httpx.Client, tiny_judge: OmniGuard) -> None:
    assert cluster.get("/healthz").status_code == 200
    for text in TEXTS:
        expected = tiny_judge.check(user=text)
        got = _guard(cluster, text)
        codes = tuple(c["code"] if isinstance(c, dict) else c for c in got["categories"])
        assert (got["label"], codes) == (expected.label, expected.category_codes), text
        moderation = cluster.post("/v1/moderations", json={"input": text})
        assert moderation.status_code == 200
        result = moderation.json()["results"][0]
        assert result["flagged"] == expected.unsafe, text
        assert result["omniguard"]["label"] == expected.label


def test_auth_and_caps_hold_on_the_cluster(cluster: httpx.Client) -> None:
    open_client = httpx.Client(base_url=str(cluster.base_url), timeout=30)
    try:
        assert open_client.post("/v1/guard", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 401
    finally:
        open_client.close()


def _replicas() -> list[str]:
    """The names of the live Serve replica actors (no dashboard needed)."""
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::"))


def test_a_killed_replica_is_replaced_and_nothing_unsafe_passes(cluster: httpx.Client) -> None:
    before = _replicas()
    assert len(before) == 2, before
    victim = ray.get_actor(before[0], namespace="serve")
    texts = TEXTS * 15
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_guard, cluster, text) for text in texts]
        time.sleep(0.3)  # under load
        ray.kill(victim, no_restart=True)
        answers = [f.result(timeout=300) for f in futures]
    assert len(answers) == len(texts)
    for text, answer in zip(texts, answers):
        if TRIGGER in text:
            assert answer["label"] == "unsafe", (text, answer)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = set(_replicas())
        if len(alive) == 2 and before[0] not in alive:
            break
        time.sleep(1)
    else:
        raise AssertionError("the killed replica was not replaced within 120 s")
    assert _guard(cluster, TEXTS[1])["label"] == "unsafe"


def test_build_app_settings_are_checked() -> None:
    from omniguard_plugins.ray_serve import replica_settings

    replica, options = replica_settings({"model": "/m", "num_replicas": "3", "num_gpus": "1", "max_batch": "8",
                                         "max_queued": "64"})
    assert replica.judge == {"model": "/m", "max_batch": 8, "max_queued": 64}
    assert options["num_replicas"] == 3 and options["ray_actor_options"]["num_gpus"] == 1.0
    assert options["max_ongoing_requests"] == 72  # the judge's admission budget: max_queued + max_batch
    with pytest.raises(ConfigError, match="unknown setting"):
        replica_settings({"model": "/m", "num_replica": 2})
    shipped = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "serve_config.yaml").read_text())
    replica, options = replica_settings(shipped["applications"][0]["args"])
    assert replica.token_file == "/etc/omniguard/tokens" and options["autoscaling_config"]["max_replicas"] == 8
    assert options["ray_actor_options"] == {"num_gpus": 1.0, "num_cpus": 4.0}
    with pytest.raises(ConfigError, match="not both"):
        replica_settings({"num_replicas": 2, "autoscaling_config": {"min_replicas": 1}})
