"""Security events that are not model changes: logins, failed logins and logouts."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from policy import audit


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
    # Django has already masked anything secret in `credentials`; only the username is kept.
    username = str(credentials.get("username", ""))[:150]
    audit.record("login_failed", object_type="user", object_repr=username)
