"""Where the service may send requests: a channel's retry endpoint and the exhaustion webhook.

The service POSTs to URLs that its users type in, from inside the network it runs in: without
rules, a retry endpoint of `http://169.254.169.254/...` or `http://127.0.0.1:5432/` makes it a
proxy into that network (SSRF). So:

* a URL is `http` or `https`, names a host, carries no user name or password, its port (if
  any) is a TCP port, and a host given as an address is one the service may connect to
  (`url_problem`, when the URL is saved and again when it is used);
* the address is checked **when connecting**, after the name is resolved, and the connection
  goes to the address that was checked, so that a name that resolves elsewhere the next time
  (DNS rebinding) gains nothing (`allowed_addresses`): loopback, link-local, private, shared,
  multicast, reserved and unspecified addresses are refused unless a network of
  ALLOWED_ENDPOINT_NETWORKS holds them (the embedded mode allows loopback, where its sample
  receiver listens; production allows none unless told);
* what is kept of a refused URL or of a channel app's answer never echoes the URL (which may
  hold a token in its query) and is a short, printable excerpt (`answer_excerpt`).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

SCHEMES = ("http", "https")
EXCERPT_LIMIT = 200


def url_problem(url: str) -> str | None:
    """What makes `url` unusable as an endpoint, or None. The message never repeats the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Enter a valid http or https URL with a port between 1 and 65535."
    if parts.scheme not in SCHEMES:
        return "Only http and https URLs are allowed."
    if not parts.hostname:
        return "The URL must name a host."
    if parts.username is not None or parts.password is not None:
        return "The URL must not carry a user name or password; use the channel's secret."
    if port is not None and not 1 <= port <= 65535:
        return "The port must be between 1 and 65535."
    if _is_address(parts.hostname) and not address_allowed(parts.hostname):
        return (
            "The service may not connect to this address (loopback, private, link-local or "
            "reserved; see ALLOWED_ENDPOINT_NETWORKS)."
        )
    return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def validate_endpoint(url: str) -> None:
    """The model field's validator (the admin's and every form's)."""
    problem = url_problem(url) if url else None
    if problem:
        raise ValidationError(problem, code="endpoint")


@cache
def _allowed_networks(
    spec: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in spec)


def allowed_networks() -> tuple:
    return _allowed_networks(tuple(settings.ALLOWED_ENDPOINT_NETWORKS))


def address_allowed(address: str) -> bool:
    """Whether the service may connect to `address` (an IP address as text)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed_networks()):
        return True
    return ip.is_global and not ip.is_multicast


class AddressRefused(OSError):
    """The host resolves only to addresses the service may not connect to."""


def allowed_addresses(host: str, port: int) -> list[tuple]:
    """The resolved addresses of `host` the service may connect to (getaddrinfo's tuples), in
    the resolver's order; AddressRefused when there is none (the message names the host, never
    the URL)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"{host}: the name does not resolve") from exc
    allowed = [info for info in infos if address_allowed(info[4][0])]
    if not allowed:
        raise AddressRefused(
            f"{host} resolves to an address the service may not connect to "
            "(loopback, private, link-local or reserved; see ALLOWED_ENDPOINT_NETWORKS)"
        )
    return allowed


def checked_connection(
    address: tuple[str, int], timeout=None, source_address=None
) -> socket.socket:
    """`socket.create_connection` for `http.client`, to an address `allowed_addresses` let
    through: the address connected to is the address checked."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in allowed_addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None and timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error


def answer_excerpt(text: str) -> str:
    """A short, printable excerpt of a channel app's answer, as errors keep it."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[: EXCERPT_LIMIT * 2])
    printable = " ".join(printable.split())
    if len(printable) > EXCERPT_LIMIT:
        return printable[: EXCERPT_LIMIT - 1] + "…"
    return printable
