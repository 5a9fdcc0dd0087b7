from django.urls import include, path

from policy.views import (
    audit,
    dashboard,
    downloads,
    network_csv,
    reputation,
    revisions,
    selftest,
    tester,
    tokens,
    users,
)

app_name = "policy"

urlpatterns = [
    path("", dashboard.DashboardView.as_view(), name="dashboard"),
    path("restrictions/", dashboard.RoutingRestrictionsView.as_view(), name="restrictions"),
    path(
        "restrictions/<slug:kind>/add/",
        dashboard.RoutingEntryView.as_view(),
        name="restrictions-entry-add",
    ),
    path(
        "restrictions/<slug:kind>/<slug:key>/edit/",
        dashboard.RoutingEntryView.as_view(),
        name="restrictions-entry-edit",
    ),
    path("domains/", dashboard.LocalDomainListView.as_view(), name="domains"),
    path("domains/add/", dashboard.LocalDomainCreateView.as_view(), name="domain-add"),
    path(
        "domains/<int:pk>/edit/",
        dashboard.LocalDomainUpdateView.as_view(),
        name="domain-edit",
    ),
    path(
        "domains/<int:pk>/delete/",
        dashboard.LocalDomainDeleteView.as_view(),
        name="domain-delete",
    ),
    path("smtp-users/", dashboard.SmtpUserListView.as_view(), name="smtp-users"),
    path("smtp-users/add/", dashboard.SmtpUserCreateView.as_view(), name="smtp-user-add"),
    path(
        "smtp-users/<int:pk>/edit/",
        dashboard.SmtpUserUpdateView.as_view(),
        name="smtp-user-edit",
    ),
    path(
        "smtp-users/<int:pk>/delete/",
        dashboard.SmtpUserDeleteView.as_view(),
        name="smtp-user-delete",
    ),
    path("check/", tester.CheckView.as_view(), name="check"),
    path("selftest/", selftest.SelfTestStartView.as_view(), name="selftest-start"),
    path("selftest/<int:pk>/", selftest.SelfTestDetailView.as_view(), name="selftest"),
    path("exports/", downloads.ExportListView.as_view(), name="exports"),
    path("exports/<slug:fmt>/", downloads.ExportDownloadView.as_view(), name="export"),
    path("audit/", audit.AuditLogView.as_view(), name="audit"),
    path("revisions/", revisions.RevisionListView.as_view(), name="revisions"),
    path("revisions/diff/", revisions.RevisionDiffView.as_view(), name="revision-diff"),
    path("revisions/<int:serial>/", revisions.RevisionDetailView.as_view(), name="revision"),
    path(
        "revisions/<int:serial>/snapshot.json",
        revisions.RevisionSnapshotView.as_view(),
        name="revision-snapshot",
    ),
    path("revisions/<int:serial>/rollback/", revisions.RevisionRollbackView.as_view(), name="revision-rollback"),
    path("nodes/<int:pk>/forget/", dashboard.NodeForgetView.as_view(), name="node-forget"),
    path("api-tokens/", tokens.ApiTokenView.as_view(), name="api-tokens"),
    path("api-tokens/<int:pk>/revoke/", tokens.ApiTokenRevokeView.as_view(), name="api-token-revoke"),
    path("users/", users.UserListView.as_view(), name="users"),
    path("users/add/", users.UserCreateView.as_view(), name="user-add"),
    path("users/<int:pk>/edit/", users.UserEditView.as_view(), name="user-edit"),
    path("users/<int:pk>/password-reset/", users.UserPasswordResetView.as_view(), name="user-password-reset"),
    path("networks/import/", network_csv.NetworkImportView.as_view(), name="network-import"),
    path("networks/import/preview/", network_csv.NetworkImportPreviewView.as_view(), name="network-import-preview"),
    path("networks/export/<slug:name>.csv", network_csv.NetworkExportView.as_view(), name="network-export"),
    path("reputation/", include(reputation.urlpatterns)),
]
