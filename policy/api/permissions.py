"""Who may do what through the API: the dashboard's roles, narrowed by token scopes.

A person's token has its user's role and never more; a read-only token never writes. A node
token is relayd's: it may read relayd's export and report its own node's status, and gets 403
everywhere else, the schema and its docs included. Every permission here refuses node tokens
unless it names them, so a view that forgets about them fails closed.
"""

from django.conf import settings
from rest_framework import permissions, throttling

from policy.models import ApiToken
from policy.roles import can_edit, can_view

NODE_ONLY = "A node token may only read relayd's export (/api/v1/export/relayd/) and report its node's status."
NO_ROLE = "Your account has no role; ask an administrator to make you a viewer or editor."


def node_token(request) -> ApiToken | None:
    """Return the request's node token, or None for a session or a person's token."""
    auth = request.auth
    return auth if isinstance(auth, ApiToken) and auth.is_node else None


class PersonPermission(permissions.BasePermission):
    """The base of every permission for people: node tokens are refused before anything else."""

    def has_permission(self, request, view):
        if node_token(request) is not None:
            self.message = NODE_ONLY
            return False
        return self.person_may(request, view)

    def person_may(self, request, view) -> bool:
        raise NotImplementedError


class RolePermission(PersonPermission):
    """Viewers and editors read; only editors write, and never with a read-only token."""

    def person_may(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            self.message = NO_ROLE
            return can_view(request.user)
        if isinstance(request.auth, ApiToken) and request.auth.read_only:
            self.message = "This token is read-only; use a read-write token to change the policy."
            return False
        self.message = "Only editors may change the relay policy."
        return can_edit(request.user)


class ReaderPermission(PersonPermission):
    """Any method, for anyone with a role: for questions sent by POST that change nothing."""

    message = NO_ROLE

    def person_may(self, request, view):
        return can_view(request.user)


class SecretsReaderPermission(PersonPermission):
    """Editors only, read-only tokens included: for what carries the SMTP password hashes."""

    message = "Only editors may read what holds the SMTP password hashes (relayd's snapshot)."

    def person_may(self, request, view):
        return request.method in permissions.SAFE_METHODS and can_edit(request.user)


def _node_owner_may(request, permission) -> bool:
    """Let a node token act while its user is still an editor: demoting the user stops the node too."""
    if can_edit(request.user):
        return True
    permission.message = "This node token's user is no longer an editor; create a node token as an editor."
    return False


class RelaydExportPermission(SecretsReaderPermission):
    """relayd's export: editors (sessions and tokens) and node tokens, whose job it is."""

    def has_permission(self, request, view):
        if node_token(request) is not None:
            return request.method in permissions.SAFE_METHODS and _node_owner_may(request, self)
        return super().has_permission(request, view)


class NodeReportPermission(permissions.BasePermission):
    """Status reports: node tokens only; which node a token may report for is the view's to check."""

    message = "Only node tokens may report node status: create one with manage.py create_api_token USER --node NAME."

    def has_permission(self, request, view):
        return node_token(request) is not None and _node_owner_may(request, self)


class NodeReportThrottle(throttling.SimpleRateThrottle):
    """Limit each node token's reports to RELAYADMIN_NODE_REPORT_RATE (relayd sends one every 10 s).

    The count lives in Django's cache: by default files under var/cache/, shared by every worker
    on the host; app servers on several hosts share it once CACHES names a shared cache (e.g. Redis).
    """

    scope = "node_report"

    def get_rate(self):
        # Read at each request, not at import as DRF's default does, so the setting can change.
        return settings.RELAYADMIN_NODE_REPORT_RATE

    def get_cache_key(self, request, view):
        token = node_token(request)
        return None if token is None else self.cache_format % {"scope": self.scope, "ident": token.pk}
