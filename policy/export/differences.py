"""Say where an exported MTA would answer a recipient differently from relayd (docs/verdicts.md).

The exports are configured to decide as relayd does. What no setting changes is listed here, so
that the "would this relay?" tester can say it next to relayd's verdict. Each difference is one of
address syntax only: an MTA never relays for a client that relayd's policy would not let relay.
"""

from __future__ import annotations

from collections.abc import Callable

from policy.export import TARGETS, title
from relayd.decision import parse_recipient, split_source_route


def export_differences(target: str, recipient: str, accepts: Callable[[str], bool]) -> tuple[str, ...]:
    """Return what target's export would do differently with recipient than relayd, in sentences.

    accepts(path) is relayd's verdict on a path under the same policy and client. An empty tuple
    means the export answers as relayd does.
    """
    path = recipient[1:-1] if recipient[:1] == "<" and recipient[-1:] == ">" else recipient
    try:
        rcpt = parse_recipient(path)
    except ValueError:
        route, mailbox = split_source_route(path)
        # Postfix drops a source route without checking it; relayd and Exim refuse a malformed one.
        if target == "postfix" and route is not None and mailbox and _parses(mailbox) and accepts(mailbox):
            return (f"{title(target)} would accept it: it ignores the malformed source route and takes <{mailbox}>.",)
        return ()
    if not accepts(path):
        return ()
    if target == "exim" and rcpt.routing == "more than one @":
        # Exim's address parser refuses an unquoted @ in a local part before any ACL runs.
        return (f'{title(target)} would refuse it: 501, an unquoted "@" in the local part is a syntax error there.',)
    return ()


def all_differences(recipient: str, accepts: Callable[[str], bool]) -> tuple[str, ...]:
    """Return every export's differences from relayd on recipient."""
    return tuple(note for target in TARGETS for note in export_differences(target, recipient, accepts))


def _parses(path: str) -> bool:
    try:
        parse_recipient(path)
    except ValueError:
        return False
    return True
