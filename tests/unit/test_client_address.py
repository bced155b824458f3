"""The client address behind proxies: X-Forwarded-For is believed only as far as trusted proxies wrote it."""

from __future__ import annotations

from typing import Any

import pytest

from autional_sessions.http.client_address import ClientAddress

PROXIES = ["10.0.0.0/8", "192.0.2.10", "2001:db8:a::/48"]


def scope(peer: str | None, *forwarded_for: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": None if peer is None else (peer, 50000),
        "headers": [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded_for],
    }


@pytest.fixture
def behind_proxies() -> ClientAddress:
    return ClientAddress(PROXIES)


def test_without_trusted_proxies_the_socket_peer_is_the_client_whatever_the_headers_say():
    assert ClientAddress([]).of(scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_an_untrusted_peer_cannot_choose_its_address_with_a_spoofed_header(behind_proxies):
    assert behind_proxies.of(scope("203.0.113.7", "198.51.100.1, 10.0.0.5")) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client(behind_proxies):
    # 198.51.100.1 is what the caller wrote; 203.0.113.7 is what our proxy saw.
    assert behind_proxies.of(scope("10.1.2.3", "198.51.100.1, 203.0.113.7")) == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_walked_through(behind_proxies):
    forwarded = "198.51.100.1, 203.0.113.7, 192.0.2.10, 10.9.9.9"
    assert behind_proxies.of(scope("10.1.2.3", forwarded)) == "203.0.113.7"


def test_when_every_hop_is_trusted_the_furthest_one_is_the_client(behind_proxies):
    assert behind_proxies.of(scope("10.1.2.3", "10.4.4.4, 192.0.2.10")) == "10.4.4.4"


def test_a_trusted_peer_without_the_header_is_the_client(behind_proxies):
    assert behind_proxies.of(scope("10.1.2.3")) == "10.1.2.3"


def test_ipv6_peers_and_entries_are_matched_against_ipv6_networks(behind_proxies):
    forwarded = "2001:DB8:FFFF::0001, 2001:db8:a:1::2"
    assert behind_proxies.of(scope("2001:db8:a::99", forwarded)) == "2001:db8:ffff::1"
    assert behind_proxies.of(scope("2001:db8:b::99", forwarded)) == "2001:db8:b::99"


def test_an_ipv4_peer_seen_through_a_dual_stack_socket_is_the_ipv4_address(behind_proxies):
    assert behind_proxies.of(scope("::ffff:10.1.2.3", "203.0.113.7")) == "203.0.113.7"
    assert ClientAddress([]).of(scope("::ffff:203.0.113.7")) == "203.0.113.7"


def test_cidr_membership_decides_trust(behind_proxies):
    assert behind_proxies.of(scope("10.255.255.255", "203.0.113.7")) == "203.0.113.7"
    assert behind_proxies.of(scope("11.0.0.1", "203.0.113.7")) == "11.0.0.1"
    assert behind_proxies.of(scope("192.0.2.11", "203.0.113.7")) == "192.0.2.11"


def test_a_garbage_entry_stops_the_walk_at_the_proxy_that_wrote_it(behind_proxies):
    # Nothing left of "unknown" is vouched for by a proxy we trust, so the caller cannot pick its
    # address by writing one there: the proxy that wrote the garbage is the nearest address we trust.
    assert behind_proxies.of(scope("10.1.2.3", "198.51.100.1, unknown")) == "10.1.2.3"
    assert behind_proxies.of(scope("10.1.2.3", "198.51.100.1, unknown, 10.7.7.7")) == "10.7.7.7"
    assert behind_proxies.of(scope("10.1.2.3", "198.51.100.1, , 10.7.7.7")) == "10.7.7.7"
    assert behind_proxies.of(scope("10.1.2.3", "203.0.113.7, 1.2.3.4.5")) == "10.1.2.3"


def test_entries_with_a_port_are_read_without_it(behind_proxies):
    assert behind_proxies.of(scope("10.1.2.3", "203.0.113.7:5040")) == "203.0.113.7"
    assert behind_proxies.of(scope("10.1.2.3", "[2001:db8:ffff::1]:5040")) == "2001:db8:ffff::1"
    assert behind_proxies.of(scope("10.1.2.3", "[2001:db8:ffff::1]")) == "2001:db8:ffff::1"
    assert behind_proxies.of(scope("10.1.2.3", "203.0.113.7:port")) == "10.1.2.3"
    assert behind_proxies.of(scope("10.1.2.3", "[2001:db8:ffff::1]5040")) == "10.1.2.3"


def test_several_headers_are_one_list_in_their_order(behind_proxies):
    peer_scope = scope("10.1.2.3", "198.51.100.1", "203.0.113.7, 10.2.2.2", "", "192.0.2.10")
    assert behind_proxies.of(peer_scope) == "203.0.113.7"


def test_a_peer_that_is_not_an_ip_address_is_returned_as_given(behind_proxies):
    assert behind_proxies.of(scope("testclient", "203.0.113.7")) == "testclient"


def test_no_peer_is_unknown(behind_proxies):
    assert behind_proxies.of(scope(None, "203.0.113.7")) == "unknown"
    assert behind_proxies.of({"type": "http", "headers": []}) == "unknown"


@pytest.mark.parametrize("entry", ["not-an-ip", "10.0.0.1/8", "10.0.0.0/33", "", "2001:db8::/129"])
def test_a_bad_trusted_proxy_is_refused_with_its_name(entry):
    with pytest.raises(ValueError, match="trusted proxy") as raised:
        ClientAddress(["10.0.0.0/8", entry])
    assert repr(entry) in str(raised.value)


def test_one_string_instead_of_a_list_is_refused():
    with pytest.raises(TypeError):
        ClientAddress("10.0.0.0/8")


def test_a_trusted_proxy_s_requests_are_each_read_from_their_own_headers(behind_proxies):
    # A peer's address is kept only when it is the client itself: a proxy's clients differ by request.
    first = behind_proxies.of(scope("10.1.2.3", "198.51.100.1"))
    second = behind_proxies.of(scope("10.1.2.3", "198.51.100.2"))
    assert (first, second) == ("198.51.100.1", "198.51.100.2")


def test_a_peer_seen_again_is_the_same_client_in_its_normal_form(behind_proxies):
    peer = "::ffff:203.0.113.7"  # an IPv4 client through a dual-stack socket
    assert {behind_proxies.of(scope(peer, "198.51.100.1")) for _ in range(3)} == {"203.0.113.7"}


def test_the_peers_kept_stay_bounded():
    addresses = ClientAddress([])
    for n in range(10_000):
        peer = f"198.51.{n // 256 % 256}.{n % 256}"
        assert addresses.of(scope(peer)) == peer
    assert len(addresses._direct) <= 4096
