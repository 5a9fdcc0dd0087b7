from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from policy.throttle import ThrottledPasswordChangeView, throttled
from relayadmin.health import healthz


def superusers_only(request):
    """User and role management in the Django admin is for superusers, not for every staff user."""
    return request.user.is_active and request.user.is_superuser


admin.site.has_permission = superusers_only
admin.site.site_header = "relayadmin: users and roles"
# Both login pages back off after failed logins (issue 11, finding 8).
admin.site.login = throttled(admin.site.login)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path(
        "login/",
        throttled(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Every user may change their own password; Users & roles (resetting anyone's) is for superusers.
    path("password/", ThrottledPasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("policy.api.urls")),
    path("", include("policy.urls")),
]
