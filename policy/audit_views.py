"""The audit log page: filters, readable diffs, and the filtered view as CSV or JSON."""

import json

from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import View

from policy.api.serializers import AuditEntrySerializer
from policy.diffs import field_changes
from policy.filtersets import AuditEntryFilterSet
from policy.models import AuditEntry
from policy.roles import ViewerRequiredMixin
from policy.spreadsheet import SafeWriter

ROWS_PER_PAGE = 50


class AuditLogView(ViewerRequiredMixin, View):
    def get(self, request):
        filterset = AuditEntryFilterSet(request.GET, queryset=AuditEntry.objects.all())
        entries = filterset.qs if filterset.is_valid() else AuditEntry.objects.none()
        export = request.GET.get("export")
        if export == "csv":
            return _as_csv(entries)
        if export == "json":
            return JsonResponse({"entries": _as_dicts(entries)}, json_dumps_params={"indent": 2})
        page = Paginator(entries, ROWS_PER_PAGE).get_page(request.GET.get("page"))
        rows = [(entry, field_changes(entry.before, entry.after)) for entry in page]
        query = request.GET.copy()
        query.pop("page", None)
        query.pop("export", None)
        context = {"filter": filterset, "page_obj": page, "rows": rows, "query": query.urlencode()}
        return render(request, "policy/audit_log.html", context)


def history_for(obj):
    """Return the audit entries of one object, newest first, with their readable changes."""
    entries = AuditEntry.objects.filter(object_type=str(obj._meta.verbose_name), object_id=str(obj.pk))
    return [(entry, field_changes(entry.before, entry.after)) for entry in entries[:100]]


def _as_dicts(entries) -> list[dict]:
    # The API's representation, so the page's export and GET /api/v1/audit/ agree field for field.
    return AuditEntrySerializer(entries.iterator(chunk_size=2000), many=True).data


def _as_csv(entries) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="relayadmin-audit.csv"'
    # Failed logins put what anonymous users typed into the log: no cell may run as a formula.
    writer = SafeWriter(response)
    fields = AuditEntrySerializer.Meta.fields
    writer.writerow(fields)
    for row in _as_dicts(entries):
        row["before"], row["after"] = (json.dumps(row[name], sort_keys=True) for name in ("before", "after"))
        writer.writerow([row[name] for name in fields])
    return response
