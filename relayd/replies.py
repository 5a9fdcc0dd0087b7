"""The answer about one recipient, as delivery records it in the spool state and bounces report it."""

from typing import NamedTuple


class Reply(NamedTuple):
    """The answer about one recipient: an SMTP reply, or code 0 for a problem relayd found itself."""

    code: int
    text: str

    @property
    def result(self) -> str:
        """Return sent, failed (permanently) or deferred (to be retried)."""
        kind = self.code // 100 if self.code else int(self.text[:1])
        return "sent" if kind == 2 else "failed" if kind == 5 else "deferred"

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text
