import relayd
from policy.roles import can_edit, can_view


def roles(request):
    """Tell templates what the user may do, so viewers see no edit controls."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"can_view": can_view(user), "can_edit": can_edit(user)}


def version(request):
    """Tell templates the release, shown in every page's footer."""
    return {"relayadmin_version": relayd.__version__}
