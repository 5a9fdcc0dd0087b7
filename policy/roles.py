"""The two roles: "viewer" reads the policy, "editor" changes it. Superusers are both and manage users."""

from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

VIEWER = "viewer"
EDITOR = "editor"
SUPERUSER = "superuser"
ROLES = (VIEWER, EDITOR)
ROLE_CHOICES = [
    (VIEWER, "viewer: reads every page"),
    (EDITOR, "editor: changes the policy"),
    (SUPERUSER, "superuser: everything, and manages users"),
]


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


def role_of(user) -> str:
    """Return the user's role: superuser, editor, viewer, or "" for none."""
    if user.is_superuser:
        return SUPERUSER
    names = _group_names(user)
    return EDITOR if EDITOR in names else VIEWER if VIEWER in names else ""


def assign_role(user, role: str) -> None:
    """Give a saved user exactly one role; superusers also get the Django admin (is_staff)."""
    user.is_superuser = user.is_staff = role == SUPERUSER
    user.save(update_fields=["is_superuser", "is_staff"])
    role_groups = Group.objects.filter(name__in=ROLES)
    user.groups.remove(*role_groups.exclude(name=role))
    if role in ROLES:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    user.__dict__.pop("_relayadmin_groups", None)


def require_editor(user) -> None:
    """Refuse a write from anyone who is not an editor (403, never a silent no-op)."""
    if not can_edit(user):
        raise PermissionDenied("Only editors may change the relay policy.")


class ViewerRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    """Pages anyone with a role may read; a user without a role gets 403."""

    permission_denied_message = "This page needs the viewer role or higher. Ask a superuser to give you a role."

    def test_func(self):
        return can_view(self.request.user)


class EditorRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    permission_denied_message = "This needs the editor role. Ask a superuser to make you an editor."

    def test_func(self):
        return can_edit(self.request.user)


class SuperuserRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    permission_denied_message = "Only superusers manage users and roles."

    def test_func(self):
        return self.request.user.is_active and self.request.user.is_superuser
