"""The self-test against a real Postfix that allows XCLIENT from the dashboard (issue 13): it is judged as an
Internet client there too, and sends relayd's SECRET only to a server that asks for it."""

from relayd import selftest
from tests.export import make_snapshot
from tests.export.postfix_harness import PrivatePostfix
from tests.export.test_differential import postfix_tools  # noqa: F401 (fixture)
from tests.snapshots import network


def test_the_self_test_claims_an_internet_client_from_postfix(postfix_tools):  # noqa: F811
    snapshot = make_snapshot(True, False, False)
    snapshot["trusted_networks"].append(network(9, "127.0.0.0/8", "localhost"))
    with PrivatePostfix(snapshot) as postfix:
        plain = selftest.run("127.0.0.1", postfix.port, "example.com")
        claimed = selftest.run("127.0.0.1", postfix.port, "example.com", as_client="198.51.100.1", secret="x" * 32)
    # From loopback, which Postfix's mynetworks trusts, relaying works: that proves nothing.
    assert plain.accepted > 0 and not plain.xclient and plain.client == "127.0.0.1"
    # As an Internet client, every trick is refused (and Postfix never saw a SECRET it would refuse).
    assert (claimed.xclient, claimed.client, claimed.accepted) == (True, "198.51.100.1", 0)
    assert all(attempt.code >= 500 for attempt in claimed.attempts)
