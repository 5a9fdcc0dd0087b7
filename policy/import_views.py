"""Import networks from CSV (upload, preview with every error, then commit) and export them as CSV."""

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views import View

from policy import network_csv, services
from policy.audit import audit_context
from policy.forms import NetworkImportForm
from policy.network_csv import LISTS, CsvError
from policy.roles import ViewerRequiredMixin, require_editor

SESSION_KEY = "network_import"
SHOWN_ERRORS = 200  # a preview lists this many bad lines and counts the rest


def check(pending: dict, *, dry_run: bool) -> services.ImportResult:
    """Run the pending import, or only check it; return the result with errors by line."""
    network_list = LISTS[pending["list"]]
    parsed = network_csv.read(pending["csv"], network_list)
    with audit_context(source="import", reason=f"CSV import of {pending['filename']}"):
        result = services.import_networks(
            network_list.model, parsed.rows, mode=pending["mode"], dry_run=dry_run, row_errors=parsed.errors
        )
    result.errors = {parsed.line(row): errors for row, errors in result.errors.items()}
    pending["rows"] = len(parsed.rows)
    pending["result"] = {
        "created": result.created,
        "updated": result.updated,
        "deleted": result.deleted,
        "unchanged": result.unchanged,
        "warnings": result.warnings,
        "errors": sorted(result.errors.items()),
    }
    return result


class NetworkImportView(ViewerRequiredMixin, View):
    """Upload a file; the answer is a redirect to its preview. Exports are links on the same page."""

    template_name = "policy/network_import.html"

    def get(self, request):
        return self.render(request, NetworkImportForm(lists=LISTS.values()))

    def post(self, request):
        require_editor(request.user)
        form = NetworkImportForm(request.POST, request.FILES, lists=LISTS.values())
        if not form.is_valid():
            return self.render(request, form, status=400)
        upload = form.cleaned_data["file"]
        pending = {
            "list": form.cleaned_data["network_list"],
            "mode": form.cleaned_data["mode"],
            "filename": upload.name,
        }
        try:
            pending["csv"] = network_csv.decode(upload.read())
            check(pending, dry_run=True)
        except CsvError as exc:
            form.add_error("file", str(exc))
            return self.render(request, form, status=400)
        request.session[SESSION_KEY] = pending
        return redirect("policy:network-import-preview")

    def render(self, request, form, status=200):
        return render(request, self.template_name, {"form": form, "lists": LISTS.values()}, status=status)


class NetworkImportPreviewView(ViewerRequiredMixin, View):
    """What the import would do, with every bad line; Import saves it, all or nothing."""

    template_name = "policy/network_import_preview.html"

    def get(self, request):
        pending = request.session.get(SESSION_KEY)
        if pending is None:
            messages.info(request, "Nothing to preview: upload a CSV file first.")
            return redirect("policy:network-import")
        return self.render(request, pending)

    def post(self, request):
        require_editor(request.user)
        pending = request.session.get(SESSION_KEY)
        if pending is None or request.POST.get("action") == "cancel":
            request.session.pop(SESSION_KEY, None)
            messages.info(request, "Import cancelled. Nothing was saved.")
            return redirect("policy:network-import")
        result = check(pending, dry_run=False)
        if result.errors:
            # Someone changed the list since the preview, and now some rows clash with it.
            request.session[SESSION_KEY] = pending
            messages.error(request, "The list changed since the preview; nothing was saved. See the errors below.")
            return self.render(request, pending, status=400)
        del request.session[SESSION_KEY]
        messages.success(request, f"Imported {pending['filename']}: {result.summary()}.")
        for warning in result.warnings[:10]:
            messages.warning(request, warning)
        return redirect("policy:restrictions")

    def render(self, request, pending, status=200):
        result = pending["result"]
        context = {
            "pending": pending,
            "network_list": LISTS[pending["list"]],
            "result": result,
            "errors": result["errors"][:SHOWN_ERRORS],
            "more_errors": max(0, len(result["errors"]) - SHOWN_ERRORS),
        }
        return render(request, self.template_name, context, status=status)


class NetworkExportView(ViewerRequiredMixin, View):
    def get(self, request, name):
        if name not in LISTS:
            raise Http404("No such list.")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        filename = f"{name}-networks-{timezone.now():%Y%m%d-%H%M}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        network_csv.write(LISTS[name], response)
        return response
