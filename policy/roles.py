"""The two roles: "viewer" reads the policy, "editor" changes it. Superusers are both and manage users."""

from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.core.exceptions import PermissionDenied

VIEWER = "viewer"
EDITOR = "editor"
ROLES = (VIEWER, EDITOR)


def _group_names(user) -> set[str]:
    # Cached on the user object: templates and views ask several times per request.
    if not hasattr(user, "_relayadmin_groups"):
        user._relayadmin_groups = set(user.groups.values_list("name", flat=True))
    return user._relayadmin_groups


def can_view(user) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or bool(_group_names(user) & set(ROLES))


def can_edit(user) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or EDITOR in _group_names(user)


def require_editor(user) -> None:
    """Refuse a write from anyone who is not an editor (403, never a silent no-op)."""
    if not can_edit(user):
        raise PermissionDenied("Only editors may change the relay policy.")


class ViewerRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    """Pages anyone with a role may read; a user without a role gets 403."""

    def test_func(self):
        return can_view(self.request.user)


class EditorRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    def test_func(self):
        return can_edit(self.request.user)
