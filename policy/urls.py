from django.urls import include, path

from policy import (
    audit_views,
    export_views,
    import_views,
    reputation_views,
    revision_views,
    selftest_views,
    tester_views,
    token_views,
    user_views,
    views,
)

app_name = "policy"

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("restrictions/", views.RoutingRestrictionsView.as_view(), name="restrictions"),
    path(
        "restrictions/<slug:kind>/add/",
        views.RoutingEntryView.as_view(),
        name="restrictions-entry-add",
    ),
    path(
        "restrictions/<slug:kind>/<slug:key>/edit/",
        views.RoutingEntryView.as_view(),
        name="restrictions-entry-edit",
    ),
    path("domains/", views.LocalDomainListView.as_view(), name="domains"),
    path("domains/add/", views.LocalDomainCreateView.as_view(), name="domain-add"),
    path(
        "domains/<int:pk>/edit/",
        views.LocalDomainUpdateView.as_view(),
        name="domain-edit",
    ),
    path(
        "domains/<int:pk>/delete/",
        views.LocalDomainDeleteView.as_view(),
        name="domain-delete",
    ),
    path("smtp-users/", views.SmtpUserListView.as_view(), name="smtp-users"),
    path("smtp-users/add/", views.SmtpUserCreateView.as_view(), name="smtp-user-add"),
    path(
        "smtp-users/<int:pk>/edit/",
        views.SmtpUserUpdateView.as_view(),
        name="smtp-user-edit",
    ),
    path(
        "smtp-users/<int:pk>/delete/",
        views.SmtpUserDeleteView.as_view(),
        name="smtp-user-delete",
    ),
    path("check/", tester_views.CheckView.as_view(), name="check"),
    path("selftest/", selftest_views.SelfTestStartView.as_view(), name="selftest-start"),
    path("selftest/<int:pk>/", selftest_views.SelfTestDetailView.as_view(), name="selftest"),
    path("exports/", export_views.ExportListView.as_view(), name="exports"),
    path("exports/<slug:fmt>/", export_views.ExportDownloadView.as_view(), name="export"),
    path("audit/", audit_views.AuditLogView.as_view(), name="audit"),
    path("revisions/", revision_views.RevisionListView.as_view(), name="revisions"),
    path("revisions/diff/", revision_views.RevisionDiffView.as_view(), name="revision-diff"),
    path("revisions/<int:serial>/", revision_views.RevisionDetailView.as_view(), name="revision"),
    path(
        "revisions/<int:serial>/snapshot.json",
        revision_views.RevisionSnapshotView.as_view(),
        name="revision-snapshot",
    ),
    path("revisions/<int:serial>/rollback/", revision_views.RevisionRollbackView.as_view(), name="revision-rollback"),
    path("api-tokens/", token_views.ApiTokenView.as_view(), name="api-tokens"),
    path("api-tokens/<int:pk>/revoke/", token_views.ApiTokenRevokeView.as_view(), name="api-token-revoke"),
    path("users/", user_views.UserListView.as_view(), name="users"),
    path("users/add/", user_views.UserCreateView.as_view(), name="user-add"),
    path("users/<int:pk>/edit/", user_views.UserEditView.as_view(), name="user-edit"),
    path("users/<int:pk>/password-reset/", user_views.UserPasswordResetView.as_view(), name="user-password-reset"),
    path("networks/import/", import_views.NetworkImportView.as_view(), name="network-import"),
    path("networks/import/preview/", import_views.NetworkImportPreviewView.as_view(), name="network-import-preview"),
    path("networks/export/<slug:name>.csv", import_views.NetworkExportView.as_view(), name="network-export"),
    path("reputation/", include(reputation_views.urlpatterns)),
]
