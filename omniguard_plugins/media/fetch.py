"""Fetch media from an http(s) URL, only when enabled, never into the private network.

A guard that fetches whatever URL a user pastes is a server-side request forgery waiting to
happen (cloud metadata at 169.254.169.254, admin ports on loopback). So: off by default;
http(s) only; an optional host allowlist; every hop's host is resolved and refused when any
address is loopback, private, link-local, reserved or otherwise not global; the connection goes
to the address we checked (no second DNS answer); redirects are followed by hand, each one
checked again, at most MAX_REDIRECTS; a size cap and a timeout on the whole download.

Naming a host in ``url_allowlist`` is the one way to let it resolve to a private address
(an internal media store you trust); hosts a redirect leads to are checked the same way.

Known bypasses and what stops them: numeric hosts in decimal, octal or hex (``2130706433``,
``0177.0.0.1``, ``0x7f.1``) resolve to what they mean and are judged by that address; IPv6 forms
that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, 6to4, Teredo,
NAT64 ``64:ff9b::/96``) are judged by the IPv4 address inside too; names that are loopback by
definition (``localhost.``, ``*.localhost``) are refused before any DNS query.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from ..errors import MediaFetchRefused, MediaTooLarge
from .types import MediaLimits

__all__ = ["MAX_REDIRECTS", "fetch_url", "is_public_address"]

MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


def fetch_url(url: str, limits: MediaLimits) -> bytes:
    """The body of ``url``, or MediaFetchRefused / MediaTooLarge with a one-line reason."""
    if not limits.allow_urls:
        raise MediaFetchRefused("fetching URLs is off; pass the bytes, or set allow_urls=True (with a url_allowlist)")
    deadline = time.monotonic() + limits.url_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = _get(url, limits, deadline)
        if status in _REDIRECTS:
            if not location:
                raise MediaFetchRefused(f"HTTP {status} redirect without a Location from {_host(url)}")
            url = urljoin(url, location)
            continue
        if status != 200:
            raise MediaFetchRefused(f"HTTP {status} from {_host(url)}")
        return body
    raise MediaFetchRefused(f"more than {MAX_REDIRECTS} redirects")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses. An IPv6 address that carries an IPv4
    one (mapped, compatible, 6to4, Teredo, NAT64) must be public on both counts."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return all(_public(a) for a in (ip, *_embedded_ipv4(ip)))


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out = [a for a in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if a is not None]
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # NAT64, or IPv4-compatible ::a.b.c.d
        out.append(low)
    return out


def _get(url: str, limits: MediaLimits, deadline: float) -> tuple[int, str | None, bytes]:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https"):
        raise MediaFetchRefused(f"scheme not allowed: {scheme or 'none'} (only http and https)")
    if not host:
        raise MediaFetchRefused("URL has no host")
    name = host.rstrip(".")
    if name.endswith(".localhost") or (host.endswith(".") and name in _LOOPBACK_NAMES):
        if not _allowlisted(name, limits.url_allowlist):
            raise MediaFetchRefused(f"refusing {host}: a loopback name")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise MediaFetchRefused("URL has an invalid port") from None
    named = _allowlisted(host, limits.url_allowlist)
    if not _is_ip(host) and limits.url_allowlist and not named:
        raise MediaFetchRefused(f"host {host} is not in url_allowlist")  # before any DNS query
    addresses = _resolve(host, port, allow_private=named)
    if limits.url_allowlist and not named:
        raise MediaFetchRefused(f"host {host} is not in url_allowlist")
    timeout = max(0.1, deadline - time.monotonic())
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _PinnedHTTPS(host, port, addresses, timeout)
    else:
        conn = _PinnedHTTP(host, port, addresses, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "omniguard-plugins", "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, resp.getheader("Location"), b""
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limits.max_bytes:
            raise MediaTooLarge(f"{host} sends {length} bytes, over the {limits.max_bytes}-byte limit")
        body = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(left)  # a server dripping bytes cannot stretch the deadline
            chunk = resp.read1(_CHUNK)
            if not chunk:
                return resp.status, None, bytes(body)
            body += chunk
            if len(body) > limits.max_bytes:
                raise MediaTooLarge(f"{host} sends more than the {limits.max_bytes}-byte limit")
    except (OSError, http.client.HTTPException) as exc:
        timed_out = isinstance(exc, (TimeoutError, socket.timeout))
        reason = f"over {limits.url_timeout_s:g} s" if timed_out else f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise MediaFetchRefused(f"could not fetch from {host} ({reason[:100]})") from None
    finally:
        conn.close()


def _allowlisted(host: str, allowlist: tuple[str, ...]) -> bool:
    for entry in allowlist:
        entry = entry.strip().lower()
        if entry.startswith(("*.", ".")):
            suffix = entry.lstrip("*")
            if host.endswith(suffix) and host != suffix.lstrip("."):
                return True
        elif host == entry:
            return True
    return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to; refuses the host when *any* of its addresses is not public,
    so a name that resolves to both a public and a private address cannot pick the latter."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MediaFetchRefused(f"cannot resolve {host} ({exc})"[:160]) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise MediaFetchRefused(f"cannot resolve {host}")
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                where = f"{host} is" if address == host.strip("[]") else f"{host} resolves to {address},"
                raise MediaFetchRefused(f"refusing {where} a {_describe(address)} address")
    return list(dict.fromkeys(addresses))


def _describe(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    ip = next((a for a in _embedded_ipv4(ip) if not _public(a)), ip)
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "non-public"


def _host(url: str) -> str:
    return urlsplit(url).hostname or url[:60]


def _connect(addresses: list[str], port: int, timeout: float | None) -> socket.socket:
    """Like socket.create_connection, over the addresses we checked only."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the addresses we checked, whatever DNS answers next (no rebinding)."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addresses = addresses

    def connect(self) -> None:
        sock = _connect(self._addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
