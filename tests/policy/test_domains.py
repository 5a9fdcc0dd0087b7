import pytest
from django.core.exceptions import ValidationError

from policy.domains import normalise_domain, normalise_route


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  mail.example.org ", "mail.example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("ÉCOLE.fr", "xn--cole-9oa.fr"),
        ("localdomain", "localdomain"),
    ],
)
def test_domains_are_lowercase_punycode(text, expected):
    assert normalise_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "Enter a domain name"),
        ("*.example.com", "include subdomains"),
        ("user@example.com", "only the domain part"),
        ("192.0.2.1", "is an IP address"),
        ("[192.0.2.1]", "is an IP address"),
        ("exa mple.com", "not a valid"),
        ("-bad.example", "not a valid"),
        ("a" * 64 + ".example", "not a valid"),
        ("under_score.example", "not a valid"),
    ],
)
def test_bad_domains_are_refused(text, fragment):
    with pytest.raises(ValidationError) as caught:
        normalise_domain(text)
    assert fragment in caught.value.messages[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("mail.internal", "mail.internal:25"),
        ("Mail.Internal:2525", "mail.internal:2525"),
        ("192.0.2.25", "192.0.2.25:25"),
        ("192.0.2.25:587", "192.0.2.25:587"),
        ("[2001:DB8::25]", "[2001:db8::25]:25"),
        ("[2001:db8::25]:2525", "[2001:db8::25]:2525"),
    ],
)
def test_routes_normalise_to_host_port(text, expected):
    assert normalise_route(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mail.internal:0", "no valid port"),
        ("mail.internal:70000", "no valid port"),
        ("mail.internal:smtp", "no valid port"),
        ("mail.internal:025", "no valid port"),
        ("mail.internal:", "no valid port"),
        ("[2001:db8::25", "in brackets"),  # unclosed: not read as [2001:db8::25]:25
        ("[2001:db8::25:25", "in brackets"),
        ("2001:db8::25", "in brackets"),
        ("[2001:db8::zz]:25", "not a valid IPv6 address"),
        ("bad host:25", "not a valid"),
        ("0", "not a valid IPv4 address"),  # relayd reads digits and dots as IPv4, never as a name
        ("10.1:25", "not a valid IPv4 address"),
    ],
)
def test_bad_routes_are_refused(text, fragment):
    with pytest.raises(ValidationError) as caught:
        normalise_route(text)
    assert fragment in caught.value.messages[0]
