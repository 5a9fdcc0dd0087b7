"""Security events that are not model changes: logins, failed logins and logouts."""

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from policy import audit

# What an unknown username may show of itself in the log: the characters Django allows in
# usernames, and not many of them, so that nobody can write free text into the log by failing.
_UNKNOWN_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9.@+_-]")
UNKNOWN_USERNAME_SHOWN = 32


@receiver(user_logged_in, dispatch_uid="audit-login")
def record_login(sender, request, user, **kwargs):
    with audit.audit_context(user=user):
        audit.record("login", obj=user)


@receiver(user_logged_out, dispatch_uid="audit-logout")
def record_logout(sender, request, user, **kwargs):
    if user is not None:
        with audit.audit_context(user=user):
            audit.record("logout", obj=user)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def record_login_failed(sender, credentials, request=None, **kwargs):
    # Django has already masked anything secret in `credentials`; only the username is used.
    typed = str(credentials.get("username", ""))
    User = get_user_model()
    user = User._default_manager.filter(**{User.USERNAME_FIELD: typed}).first()
    if user is not None:
        audit.record("login_failed", obj=user)
    else:
        audit.record(
            "login_failed",
            object_type="user",
            object_repr=f"unknown user {unknown_username(typed)}",
            after={"known": False, "username": audit.fingerprint(typed)},
        )


def unknown_username(typed: str) -> str:
    """Return a bounded, inert form of a username nobody has: allowed characters only, truncated."""
    shown = _UNKNOWN_USERNAME_CHARS.sub("?", typed[:UNKNOWN_USERNAME_SHOWN])
    return shown + ("…" if len(typed) > UNKNOWN_USERNAME_SHOWN else "")
