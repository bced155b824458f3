"""The address of the client a request comes from, for per-client limits and for logs.

Behind a load balancer or reverse proxy the socket peer is the proxy, and the client's address is in
`X-Forwarded-For`. That header is written by whoever sends the request, so it is only believed as far as
it was written by proxies we run: the walk starts at the socket peer and moves left through the header
only while the address it stands on is a configured trusted proxy. The first address that is not a
trusted proxy is the client. With no trusted proxies configured (the default) the socket peer is the
client, whatever the headers say.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

from autional_sessions.config import parse_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"

# Socket peers kept with their client address when that is the peer itself (no trusted proxy): the rate
# limits and the access log both ask for every request's, and clients come back.
_KEPT_PEERS = 4096


class ClientAddress:
    """Finds a request's client address, believing `X-Forwarded-For` only from `trusted_proxies`."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self._trusted = parse_networks(trusted_proxies)
        # peer, as the server gave it -> its client address, for peers that are not trusted proxies
        # (whose client address depends on the request's headers, not on the peer alone)
        self._direct: dict[str, str] = {}

    def of(self, scope: Scope) -> str:
        """The client address of an ASGI http `scope`: an IP address in its normal form, the socket peer
        as the server gave it when that is not an IP address, or "unknown" when there is no peer."""
        client = scope.get("client")
        if not client:
            return UNKNOWN
        known = self._direct.get(client[0])
        if known is not None:
            return known
        peer = _parse(client[0])
        if peer is None:
            return str(client[0])
        if not self._trusts(peer):
            if len(self._direct) >= _KEPT_PEERS:
                self._direct.clear()  # bounded: the clients of the moment come back at once
            self._direct[client[0]] = known = str(peer)
            return known
        hop = peer
        for entry in reversed(_forwarded_for(scope)):
            address = _parse(entry)
            if address is None:
                # The trusted proxy that wrote this entry could not say who its peer was, so nothing to
                # the left of it is vouched for by anyone we trust. The proxy itself is the nearest
                # address we can stand behind: its clients share one budget, rather than a caller
                # choosing its own by writing addresses further left.
                return str(hop)
            if not self._trusts(address):
                return str(address)
            hop = address
        # Every hop is one of ours (e.g. a health check from inside): the furthest one is the client.
        return str(hop)

    def _trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)


def _forwarded_for(scope: Scope) -> list[str]:
    """The entries of every `X-Forwarded-For` header, in order: a proxy may add a header of its own
    instead of appending to the last one, and HTTP treats repeated headers as one comma-joined list."""
    entries: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            text = value.decode("latin-1")
            if text.strip():
                entries.extend(item.strip() for item in text.split(","))
    return entries


# Cached: the entries of X-Forwarded-For come back with their clients (a peer of its own is kept by
# `ClientAddress`).
@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> IPAddress | None:
    """An address from a socket peer or a forwarded entry, or None for anything else.

    Some proxies append the peer's port ("192.0.2.1:5040", "[2001:db8::1]:5040"); the port is dropped.
    An IPv4 address seen through a dual-stack IPv6 socket ("::ffff:192.0.2.1") is the IPv4 address, so
    the client has one identity whichever way it connected.
    """
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and _is_port(port[1:]))):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= 65535
