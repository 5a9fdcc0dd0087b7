"""Changes that make the server an open relay need an explicit confirmation (issue 13).

One rule for the dialog, the CSV import, the API and commands: a write whose result has a
danger (risks.DANGER) that the saved policy did not have is undone unless the caller confirmed
it. A danger that is already saved (and so was confirmed once) does not ask again on every
unrelated edit: asking for the same word each time would teach admins to type it unread.
"""

import contextlib

from policy.revisions import undoable
from policy.risks import Risk, saved_dangers

# What the dialog asks the admin to type; the API's equivalent is "confirm_open_relay": true.
CONFIRM_WORD = "OPEN RELAY"
API_FIELD = "confirm_open_relay"


class DangerousChange(Exception):
    """The change would make the server an open relay and was not confirmed; nothing was saved."""

    def __init__(self, risks: list[Risk]):
        super().__init__(" ".join(risk.message for risk in risks))
        self.risks = risks

    def api_detail(self) -> str:
        return (
            f"Nothing was saved: this change makes the server an open relay. Send “{API_FIELD}”: true "
            "to save it anyway."
        )


def new_risks(before: list[Risk], after: list[Risk]) -> list[Risk]:
    """Return the risks of `after` that `before` did not have."""
    known = {(risk.code, risk.message) for risk in before}
    return [risk for risk in after if (risk.code, risk.message) not in known]


@contextlib.contextmanager
def guard(*, confirmed: bool):
    """Run the policy writes inside; undo them and raise DangerousChange if they create an unconfirmed danger."""
    if confirmed:
        yield
        return
    before = saved_dangers()
    with undoable():
        yield
        created = new_risks(before, saved_dangers())
        if created:
            raise DangerousChange(created)  # leaving the block rolls the writes back


def is_confirmed_word(text: str | None) -> bool:
    """Tell whether the admin typed the confirmation word (spacing and case forgiven, the word not)."""
    return " ".join((text or "").split()).upper() == CONFIRM_WORD


def api_confirmed(request) -> bool:
    """Read `confirm_open_relay` from a JSON object body, or from the query (bulk bodies are lists)."""
    value = request.data.get(API_FIELD) if hasattr(request.data, "get") else None
    if value is None:
        value = request.query_params.get(API_FIELD)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return value is True
