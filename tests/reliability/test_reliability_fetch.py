"""The URL fetcher (off by default) against the known SSRF bypasses: numeric host forms, IPv6
forms carrying an IPv4 address, loopback names, DNS answers that change between the check and
the connect, and redirects into any of them. Loopback only: nothing leaves the machine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from omniguard_plugins.errors import MediaFetchRefused
from omniguard_plugins.media import MediaLimits, fetch
from omniguard_plugins.media.fetch import fetch_url, is_public_address

ON = MediaLimits(allow_urls=True, url_timeout_s=2.0)


@pytest.mark.parametrize("url", [
    "http://0177.0.0.1/x.png",          # octal
    "http://0x7f.1/x.png",              # hex, short form
    "http://127.1/x.png",               # short form
    "http://017700000001/x.png",        # one octal number
    "http://0x7f000001/x.png",          # one hex number
    "http://2130706433/x.png",          # one decimal number
    "http://0.0.0.0/x.png",
    "http://[::ffff:127.0.0.1]/x.png",  # IPv4-mapped
    "http://[::ffff:7f00:1]/x.png",
    "http://[::127.0.0.1]/x.png",       # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/x",    # NAT64 of 169.254.169.254
    "http://[2002:a00:1::]/x.png",      # 6to4 of 10.0.0.1
    "http://[::]/x.png",
    "http://localhost./x.png",          # loopback by name, with the root dot
    "http://foo.localhost/x.png",
    "http://LOCALHOST/x.png",
    "http://[fe80::1%25eth0]/x.png",    # link-local with a zone
])
def test_every_form_of_a_private_address_is_refused_before_any_connection(url, monkeypatch):
    monkeypatch.setattr(fetch, "_connect", lambda *a: pytest.fail(f"connected for {url}"))
    with pytest.raises(MediaFetchRefused, match="refusing|cannot resolve"):
        fetch_url(url, ON)


@pytest.mark.parametrize(("address", "public"), [
    ("2002:808:808::1", True),                       # 6to4 of 8.8.8.8
    ("2002:a00:1::1", False),                        # 6to4 of 10.0.0.1
    ("64:ff9b::808:808", False),                     # NAT64 sits in reserved ::/8: refused even for 8.8.8.8
    ("64:ff9b::7f00:1", False),                      # NAT64 of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo (client 127.0.0.1)
    ("::a00:1", False),                              # IPv4-compatible 10.0.0.1
    ("::ffff:a9fe:a9fe", False),                     # mapped 169.254.169.254
])
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address, public):
    assert is_public_address(address) is public


def test_a_dns_answer_that_changes_after_the_check_is_never_connected_to(monkeypatch):
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    looked_up: list[str] = []
    connected: list[str] = []

    def getaddrinfo(host, port, *a, **k):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in next(answers)]

    def connect(addresses, port, timeout):
        connected.extend(addresses)
        raise ConnectionRefusedError("no network in tests")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(fetch, "_connect", connect)
    with pytest.raises(MediaFetchRefused, match="could not fetch"):
        fetch_url("http://rebind.example/x.png", ON)
    assert looked_up == ["rebind.example"]  # resolved once: the connection goes to what was checked
    assert connected == ["93.184.216.34"]


def test_a_name_with_one_private_answer_among_public_ones_is_refused(monkeypatch):
    monkeypatch.setattr(fetch.socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.5", port, 0, 0)),
    ])
    monkeypatch.setattr(fetch, "_connect", lambda *a: pytest.fail("connected"))
    with pytest.raises(MediaFetchRefused, match="resolves to ::ffff:10.0.0.5, a private address"):
        fetch_url("http://mixed.example/x.png", ON)


class Redirector:
    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.paths.append(self.path)
                port = self.server.server_address[1]
                targets = {
                    "/to-mapped": f"http://[::ffff:127.0.0.1]:{port}/secret",
                    "/to-decimal": f"http://2130706433:{port}/secret",
                    "/to-octal": f"http://0177.0.0.1:{port}/secret",
                    "/to-dot": f"http://localhost.:{port}/secret",
                    "/to-nat64": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
                }
                self.send_response(302)
                self.send_header("Location", targets.get(self.path, "/"))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]


@pytest.fixture(scope="module")
def redirector() -> Iterator[Redirector]:
    server = Redirector()
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.mark.parametrize("path", ["/to-mapped", "/to-decimal", "/to-octal", "/to-dot", "/to-nat64"])
def test_a_redirect_to_any_private_form_is_refused_and_never_followed(redirector, path):
    trusted = MediaLimits(allow_urls=True, url_allowlist=("localhost",), url_timeout_s=2.0)
    redirector.paths.clear()
    with pytest.raises(MediaFetchRefused, match="refusing|not in url_allowlist"):
        fetch_url(f"http://localhost:{redirector.port}{path}", trusted)
    assert redirector.paths == [path]  # "/secret" was never requested
