"""host:port text: one reader for next hops, snapshot routes and listen addresses."""

import pytest

from relayd.hostport import HostPort, split_host_port
from relayd.settings import parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp.example.net:25", HostPort("smtp.example.net", 25, False)),
        ("192.0.2.1:2525", HostPort("192.0.2.1", 2525, False)),
        ("[2001:db8::25]:25", HostPort("2001:db8::25", 25, True)),
        ("[192.0.2.1]:1", HostPort("192.0.2.1", 1, True)),  # the caller decides whether brackets may hold IPv4
        ("host:65535", HostPort("host", 65535, False)),
    ],
)
def test_host_and_port_split_at_the_last_colon(text, expected):
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("smtp.example.net", "has no port"),
        ("2001:db8::25:25", "write an IPv6 next hop in brackets"),
        ("::1", "in brackets"),
        ("[::1]x:25", "in brackets"),
        ("[::1]]:25:26", "in brackets"),
        ("host:0", "no valid port"),
        ("host:65536", "no valid port"),
        ("host:", "no valid port"),
        ("host:x", "no valid port"),
        ("host:025", "no valid port"),  # a leading zero reads as octal to some tools
        ("host:+25", "no valid port"),
        ("host: 25", "no valid port"),
        ("host:2_5", "no valid port"),
        ("host:²", "no valid port"),  # str.isdigit() takes it; int() does not
        ("host:٢٥", "no valid port"),  # Arabic-Indic digits: int() would read 25
        ("host:99999999999999999999", "no valid port"),
        (":25", "has no host"),
        ("[]:25", "has no host"),
    ],
)
def test_malformed_host_port_is_refused_with_the_fix(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        split_host_port(text)


def test_listen_addresses_may_take_port_0_and_must_be_ip_addresses():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::]:2525") == ("::", 2525)
    with pytest.raises(ValueError, match="write an IPv6 listen address in brackets"):
        parse_listen("::1:2525")
    with pytest.raises(ValueError, match="listen on an IP address"):
        parse_listen("localhost:2525")
    with pytest.raises(ValueError, match="no valid port"):
        parse_listen("127.0.0.1:00")
