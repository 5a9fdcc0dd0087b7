"""The exports page: download what relayd enforces, or configuration for Postfix and Exim."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views import View

from policy.downloads import FORMATS, export, latest_revision
from policy.export import targets
from policy.roles import ViewerRequiredMixin, can_edit


class ExportListView(ViewerRequiredMixin, View):
    def get(self, request):
        return render(request, "policy/exports.html", {"revision": latest_revision(), "targets": targets()})


class ExportDownloadView(ViewerRequiredMixin, View):
    def get(self, request, fmt):
        if fmt not in FORMATS:
            raise Http404("No such export format.")
        if fmt == "relayd" and not can_edit(request.user):
            # relayd's snapshot carries the SMTP password hashes.
            raise PermissionDenied("Only editors may download relayd's snapshot.")
        download = export(fmt)
        response = HttpResponse(download.body, content_type=download.content_type)
        response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
        response["ETag"] = f'"{download.revision.sha256}"'
        return response
