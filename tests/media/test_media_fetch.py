"""URL sources: off by default; when on, http(s) only, allowlist, size cap, timeout, and never
the private network, also not through a redirect. All traffic stays on loopback: an allowed
"public" host is simulated by allowlisting ``localhost`` by name."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from omniguard_plugins import Image, MediaFetchRefused, MediaTooLarge
from omniguard_plugins.media import MediaLimits, decode_part
from omniguard_plugins.media.fetch import MAX_REDIRECTS, fetch_url, is_public_address
from tests.support.media_factory import png_bytes

PNG = png_bytes((16, 16), (0, 0, 255))


class Server:
    def __init__(self) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.paths.append(self.path)
                port = self.server.server_address[1]
                redirects = {
                    "/to-loopback": f"http://127.0.0.1:{port}/red.png",
                    "/to-metadata": "http://169.254.169.254/latest/meta-data/",
                    "/relative": "/red.png",
                    "/loop": "/loop",
                }
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                    self.end_headers()
                elif self.path == "/red.png":
                    self._send(PNG)
                elif self.path == "/big":
                    self._send(b"\0" * 5000)
                elif self.path == "/big-unannounced":
                    self.send_response(200)
                    self.end_headers()  # no Content-Length: read until close
                    self.wfile.write(b"\0" * 5000)
                elif self.path == "/slow":
                    time.sleep(1.5)
                    self._send(PNG)
                else:
                    self.send_error(404)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


ON = MediaLimits(allow_urls=True)
TRUSTED = MediaLimits(allow_urls=True, url_allowlist=("localhost",), url_timeout_s=1.0, max_bytes=4096)


def test_urls_are_off_by_default(server):
    with pytest.raises(MediaFetchRefused, match="fetching URLs is off"):
        decode_part(Image(server.url("/red.png")), MediaLimits())
    assert server.paths == []


def test_an_allowlisted_host_is_fetched(server):
    [decoded] = decode_part(Image(server.url("/red.png")), TRUSTED)
    assert decoded.image.getpixel((0, 0)) == (0, 0, 255)
    assert fetch_url(server.url("/relative"), TRUSTED) == PNG  # a redirect within the host is followed


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/x.png", "refusing 127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "refusing 169.254.169.254 is a link-local address"),
        ("http://[::1]:9/x.png", "loopback"),
        ("http://10.0.0.8/x.png", "private"),
        ("http://2130706433/x.png", "resolves to 127.0.0.1, a loopback"),  # 127.0.0.1 as one number
        ("http://localhost:9/x.png", "localhost resolves to 127.0.0.1, a loopback"),
    ],
)
def test_the_private_network_is_refused_when_urls_are_on(url, reason):
    with pytest.raises(MediaFetchRefused, match=reason):
        fetch_url(url, ON)


@pytest.mark.parametrize(("path", "reason"), [
    ("/to-loopback", "refusing 127.0.0.1 is a loopback address"),
    ("/to-metadata", "refusing 169.254.169.254 is a link-local address"),
])
def test_a_redirect_into_the_private_network_is_refused(server, path, reason):
    server.paths.clear()
    with pytest.raises(MediaFetchRefused, match=reason):
        fetch_url(server.url(path), TRUSTED)
    assert server.paths == [path]  # the redirect's target was never requested


@pytest.mark.parametrize(("url", "reason"), [
    ("http://example.com/x.png", "example.com is not in url_allowlist"),
    ("ftp://localhost/x.png", "scheme not allowed: ftp"),
    ("file:///etc/passwd", "scheme not allowed: file"),
])
def test_only_http_to_allowlisted_hosts(url, reason):
    with pytest.raises(MediaFetchRefused, match=reason):
        decode_part(Image(url), TRUSTED)


def test_size_cap_timeout_redirect_limit_and_http_errors(server):
    with pytest.raises(MediaTooLarge, match="sends 5000 bytes"):
        fetch_url(server.url("/big"), TRUSTED)
    with pytest.raises(MediaTooLarge, match="more than the 4096-byte limit"):
        fetch_url(server.url("/big-unannounced"), TRUSTED)
    with pytest.raises(MediaFetchRefused, match="over 1 s"):
        fetch_url(server.url("/slow"), TRUSTED)
    with pytest.raises(MediaFetchRefused, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch_url(server.url("/loop"), TRUSTED)
    with pytest.raises(MediaFetchRefused, match="HTTP 404"):
        fetch_url(server.url("/missing"), TRUSTED)


def test_subdomain_wildcards_in_the_allowlist():
    limits = MediaLimits(allow_urls=True, url_allowlist=("*.example.org",))
    with pytest.raises(MediaFetchRefused, match="example.org is not in url_allowlist"):
        fetch_url("http://example.org/x", limits)  # the bare domain is not a subdomain
    with pytest.raises(MediaFetchRefused, match="badexample.org is not in url_allowlist"):
        fetch_url("http://badexample.org/x", limits)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address, public):
    assert is_public_address(address) is public
