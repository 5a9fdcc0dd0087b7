"""Who may do what through the API: the dashboard's roles, narrowed by read-only tokens."""

from rest_framework import permissions

from policy.models import ApiToken
from policy.roles import can_edit, can_view


class RolePermission(permissions.BasePermission):
    """Viewers and editors read; only editors write, and never with a read-only token."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            self.message = "Your account has no role; ask an administrator to make you a viewer or editor."
            return can_view(request.user)
        if isinstance(request.auth, ApiToken) and request.auth.read_only:
            self.message = "This token is read-only; use a read-write token to change the policy."
            return False
        self.message = "Only editors may change the relay policy."
        return can_edit(request.user)
