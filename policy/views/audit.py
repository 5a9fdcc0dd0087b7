"""The audit log page: filters, readable diffs, and the filtered view as CSV or JSON."""

import json

from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import View

from policy import audit_display as display
from policy.api.serializers import AuditEntrySerializer
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
        # A page holds ROWS_PER_PAGE groups: a bulk change of thousands of rows is one of them.
        page = Paginator(display.grouped(entries), ROWS_PER_PAGE).get_page(request.GET.get("page"))
        groups = display.expand(entries, page)
        query = request.GET.copy()
        query.pop("page", None)
        query.pop("export", None)
        everything = AuditEntry.objects.all()
        context = {
            "filter": filterset,
            "page_obj": page,
            "groups": groups,
            "rows": [row for group in groups for row in group.rows],
            "object_types": display.choices(everything, "object_type"),
            "actions": display.choices(everything, "action"),
            "query": query.urlencode(),
        }
        return render(request, "policy/audit_log.html", context)


def history_for(obj):
    """Return the audit entries of one object, newest first, with their readable changes."""
    entries = AuditEntry.objects.filter(object_type=str(obj._meta.verbose_name), object_id=str(obj.pk))
    return display.readable(entries[:100])


def _as_dicts(entries) -> list[dict]:
    # The API's representation, so the page's export and GET /api/v1/audit/ agree field for field.
    # many=True makes a ListSerializer, whose data is a list; the stubs type it as one serializer's.
    return AuditEntrySerializer(entries.iterator(chunk_size=2000), many=True).data  # type: ignore[return-value]


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
