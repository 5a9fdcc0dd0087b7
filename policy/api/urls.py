from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from policy.api import publishing, reputation, views

app_name = "api"

router = DefaultRouter()
router.register("trusted-networks", views.TrustedNetworkViewSet)
router.register("denied-networks", views.DeniedNetworkViewSet)
router.register("internal-addresses", views.InternalAddressViewSet)
router.register("domains", views.LocalDomainViewSet)
router.register("smtp-users", views.SmtpUserViewSet)
router.register("audit", views.AuditEntryViewSet)
router.register("revisions", publishing.RevisionViewSet)
router.register("daemons", publishing.DaemonViewSet)
router.register("selftests", publishing.SelfTestViewSet)
router.register("reputation/lists", reputation.BlocklistViewSet)
router.register("reputation", reputation.ReputationViewSet)

urlpatterns = [
    path("restrictions/", views.RoutingRestrictionsView.as_view(), name="restrictions"),
    path("export/<slug:fmt>/", publishing.ExportView.as_view(), name="export"),
    path("check/", publishing.CheckView.as_view(), name="check"),
    path("reputation/check/", reputation.CheckView.as_view(), name="reputation-check"),
    path("reputation/metrics", reputation.MetricsView.as_view(), name="reputation-metrics"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The docs are pages for people: a browser without a session is sent to the login page.
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    path(
        "schema/swagger-ui/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api:schema")),
        name="swagger-ui",
    ),
    path("schema/redoc/", login_required(SpectacularRedocView.as_view(url_name="api:schema")), name="redoc"),
    path("", include(router.urls)),
]
