from policy.roles import can_edit, can_view


def roles(request):
    """Tell templates what the user may do, so viewers see no edit controls."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"can_view": can_view(user), "can_edit": can_edit(user)}
