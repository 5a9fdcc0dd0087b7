"""Build the RFC 3464 delivery status notification that returns failed recipients to the sender."""

import re
import textwrap
import uuid
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import Any

from relayd.replies import Reply

_ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?![\d.])")


def build_dsn(
    envelope: dict[str, Any], message: bytes, failed: list[dict[str, Any]], reporting_mta: str, now: datetime
) -> bytes:
    """Return an RFC 3464 delivery status notification of the failed recipients of a message, with CRLF line ends."""
    boundary = f"{uuid.uuid4().hex}/{reporting_mta}"
    headers, _, _ = message.partition(b"\r\n\r\n")
    # RFC 2045 6.4: a multipart holding 8-bit text must say so too.
    eight_bit = [] if headers.isascii() else ["Content-Transfer-Encoding: 8bit"]
    arrival = format_datetime(datetime.fromisoformat(envelope["received_at"]))
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{envelope['mail_from']}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid('dsn', domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",  # RFC 3834: automatic responders must not answer it
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        *eight_bit,
        "",
        "This is a delivery status notification (RFC 3464).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {reporting_mta}.",
        "",
        f"Your message of {arrival} could not be delivered to the recipients below.",
        "The reasons follow each address; the headers of your message are attached.",
        "",
        *(_fold(f"<{failure['address']}>: {Reply(failure['code'], failure['reply'])}") for failure in failed),
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_mta}",
        f"Arrival-Date: {arrival}",
    ]
    for failure in failed:
        reply = Reply(failure["code"], failure["reply"])
        status = _ENHANCED_STATUS.match(reply.text)
        lines += [
            "",
            f"Final-Recipient: rfc822; {failure['address']}",
            "Action: failed",
            f"Status: {status[0] if status else f'{reply.code // 100}.0.0'}",
            # RFC 3464 2.3.6: "smtp" is for replies from a remote host, X- types for anything else.
            _fold(f"Diagnostic-Code: smtp; {reply}" if reply.code else f"Diagnostic-Code: X-Relayd; {reply}"),
            f"Last-Attempt-Date: {format_datetime(now)}",
        ]
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        *eight_bit,
        "",
    ]
    return "\r\n".join(lines).encode() + b"\r\n" + headers + f"\r\n\r\n--{boundary}--\r\n".encode()


def _fold(line: str) -> str:
    """Fold a header field or text line at spaces, so no line exceeds 78 characters (RFC 5322 2.2.3)."""
    return "\r\n ".join(textwrap.wrap(line, width=78, break_long_words=False, break_on_hyphens=False))
