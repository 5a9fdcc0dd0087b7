"""Slow down password guessing: back off per client address and per username after failed logins.

Each failed login counts against the client's address and the username typed. Past a number of
free failures, each further one locks that address or username out for twice as long as the
one before, up to a cap; while either is locked, the login pages answer 429 without checking
any password, so guessing gets no faster by trying harder and writes no more audit entries.
A wrong current password on the change-password page counts as a failed login of that account.
A successful login clears its username's count; an address's count lapses after a quiet hour.

State lives in Django's cache (settings.CACHES). Counts are read and written without a lock:
concurrent failures may undercount by the number of requests in flight, which bounds nothing
an attacker could scale.
"""

import hashlib
import math
import time
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import PasswordChangeView
from django.core.cache import cache
from django.dispatch import receiver
from django.shortcuts import render


@dataclass(frozen=True)
class Limit:
    free_failures: int  # failures before the first lock-out
    first_lockout: float  # seconds; each further failure doubles it
    max_lockout: float  # seconds
    forget_after: float  # seconds without a failure after which the count starts again


def _limits() -> dict[str, Limit]:
    config = settings.LOGIN_THROTTLE
    common = (config["first_lockout"], config["max_lockout"], config["forget_after"])
    return {
        "username": Limit(config["username_free_failures"], *common),
        "address": Limit(config["address_free_failures"], *common),
    }


def _now() -> float:
    return time.time()


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _keys(request, username: str) -> dict[str, str]:
    # Hashed: cache keys must be short and plain, and the username is whatever was typed.
    values = {"username": username.strip().casefold(), "address": client_address(request)}
    return {
        kind: f"login-throttle:{kind}:{hashlib.sha256(value.encode()).hexdigest()}" for kind, value in values.items()
    }


def retry_after(request, username: str) -> int:
    """Return the seconds until this address and username may try a password again; 0 if now."""
    now = _now()
    waits = [state["locked_until"] - now for state in cache.get_many(list(_keys(request, username).values())).values()]
    return max([0, *(math.ceil(wait) for wait in waits if wait > 0)])


def note_failure(request, username: str) -> None:
    """Count a failed login against the address and the username, locking either out past its free failures."""
    now = _now()
    limits = _limits()
    for kind, key in _keys(request, username).items():
        limit = limits[kind]
        state = cache.get(key) or {"failures": 0, "locked_until": 0.0}
        state["failures"] += 1
        excess = state["failures"] - limit.free_failures
        if excess >= 0:
            state["locked_until"] = now + min(limit.first_lockout * 2**excess, limit.max_lockout)
        cache.set(key, state, timeout=max(limit.forget_after, state["locked_until"] - now))


def forget_failures(request, username: str) -> None:
    """Clear the username's count after a successful login; the address keeps its own."""
    cache.delete(_keys(request, username)["username"])


def _locked_out(response, wait: int):
    response["Retry-After"] = str(wait)
    return response


def _lockout_message(wait: int) -> str:
    unit = "second" if wait == 1 else "seconds"
    return f"Too many failed logins for this account or from your address. Wait {wait} {unit}, then try again."


def throttled(view):
    """Answer a login POST with 429 and the login form while its address or username is locked out."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method == "POST":
            username = str(request.POST.get("username", ""))
            wait = retry_after(request, username)
            if wait:
                context = {
                    "form": AuthenticationForm(request, initial={"username": username[:150]}),
                    "next": request.POST.get("next", ""),
                    "throttled": _lockout_message(wait),
                }
                return _locked_out(render(request, "registration/login.html", context, status=429), wait)
        return view(request, *args, **kwargs)

    return wrapper


class ThrottledPasswordChangeView(PasswordChangeView):
    """Change my password; a wrong current password counts as a failed login of this account.

    The form checks the current password, so without this a stolen session could guess the
    account's password here at full speed, past the login page's back-off.
    """

    def post(self, request, *args, **kwargs):
        wait = retry_after(request, request.user.get_username())
        if wait:
            form = self.get_form_class()(user=request.user)
            context = self.get_context_data(form=form, throttled=_lockout_message(wait))
            return _locked_out(self.render_to_response(context, status=429), wait)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if form.has_error("old_password"):
            note_failure(self.request, self.request.user.get_username())
        return super().form_invalid(form)


@receiver(user_login_failed, dispatch_uid="throttle-login-failed")
def _count_failure(sender, credentials, request=None, **kwargs):
    if request is not None:  # None: a script called authenticate(), not a login page
        note_failure(request, str(credentials.get("username", "")))


@receiver(user_logged_in, dispatch_uid="throttle-logged-in")
def _clear_failures(sender, request, user, **kwargs):
    if request is not None:
        forget_failures(request, user.get_username())
