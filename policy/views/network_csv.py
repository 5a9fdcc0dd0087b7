"""Import networks from CSV (upload, preview with every error, then commit) and export them as CSV."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views import View

from policy import network_csv, safety, services
from policy.audit import audit_context
from policy.forms import NetworkImportForm
from policy.middleware import own_policy_change
from policy.network_csv import LISTS, CsvError
from policy.revisions import rehearsal
from policy.risks import DANGER, analyse
from policy.roles import ViewerRequiredMixin, require_editor
from policy.snapshot import UnpublishablePolicy
from policy.tester import current_snapshot

SESSION_KEY = "network_import"
SHOWN_ERRORS = 200  # a preview lists this many bad lines and counts the rest
SHOWN_REMOVALS = 200  # and this many of the entries a replace removes
# A replace that removes more entries than this asks for a danger-styled confirmation first.
REMOVALS_WITHOUT_CONFIRMATION = 5


def check(pending: dict, *, dry_run: bool, confirmed: bool = False) -> services.ImportResult:
    """Run the pending import, or only check it; return the result with errors by line.

    The check runs the import for real in a rehearsal that is always rolled back, so that the
    risk analysis judges the policy exactly as it would be after the import. The import itself
    refuses (safety.DangerousChange) to make an open relay unless `confirmed`.
    """
    network_list = LISTS[pending["list"]]
    parsed = network_csv.read(pending["csv"], network_list, max_rows=settings.BULK_MAX_ROWS)
    added_risks = []
    with audit_context(source="import", reason=f"CSV import of {pending['filename']}"):
        if dry_run:
            before = analyse(current_snapshot())
            with rehearsal():
                result = services.import_networks(
                    network_list.model, parsed.rows, mode=pending["mode"], row_errors=parsed.errors
                )
                after = [] if result.errors else analyse(current_snapshot())
            added_risks = safety.new_risks(before, after)
        else:
            with safety.guard(confirmed=confirmed):
                result = services.import_networks(
                    network_list.model, parsed.rows, mode=pending["mode"], row_errors=parsed.errors
                )
    result.errors = {parsed.line(row): errors for row, errors in result.errors.items()}
    pending["rows"] = len(parsed.rows)
    pending["result"] = {
        "created": result.created,
        "updated": result.updated,
        "deleted": result.deleted,
        "unchanged": result.unchanged,
        "warnings": result.warnings,
        "removed": result.removed[:SHOWN_REMOVALS],
        # The session keeps only the errors a preview shows: 10,000 of them would bloat every request.
        "errors": sorted(result.errors.items())[:SHOWN_ERRORS],
        "error_count": len(result.errors),
        "risks": [{"level": risk.level, "message": risk.message} for risk in added_risks],
    }
    return result


def needs_removal_confirmation(result: dict) -> bool:
    return result["deleted"] > REMOVALS_WITHOUT_CONFIRMATION


def is_dangerous(result: dict) -> bool:
    return any(risk["level"] == DANGER for risk in result.get("risks", ()))


class NetworkImportView(ViewerRequiredMixin, View):
    """Upload a file; the answer is a redirect to its preview. Exports are links on the same page."""

    template_name = "policy/network_import.html"

    def get(self, request):
        return self.render(request, NetworkImportForm(lists=LISTS.values()))

    # Only a check: the file is parsed before any lock; the risk rehearsal holds one only while it runs.
    @own_policy_change
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
        previewed = pending["result"]
        if needs_removal_confirmation(previewed) and request.POST.get("confirm_removal") != str(previewed["deleted"]):
            messages.error(
                request, f"Nothing was saved: tick “Remove {previewed['deleted']} entries” to confirm the removals."
            )
            return self.render(request, pending, status=400)
        try:
            result = check(pending, dry_run=False, confirmed=safety.is_confirmed_word(request.POST.get("confirm_word")))
        except UnpublishablePolicy as exc:
            request.session[SESSION_KEY] = pending
            messages.error(request, exc.messages[0])
            return self.render(request, pending, status=400)
        except safety.DangerousChange as exc:
            pending["result"]["risks"] = [{"level": risk.level, "message": risk.message} for risk in exc.risks]
            request.session[SESSION_KEY] = pending
            messages.error(
                request,
                f"Nothing was saved: this import makes the server an open relay. "
                f"Type {safety.CONFIRM_WORD} to import it anyway.",
            )
            return self.render(request, pending, status=400)
        if result.errors:
            # Someone changed the list since the preview, and now some rows clash with it.
            request.session[SESSION_KEY] = pending
            messages.error(request, "The list changed since the preview; nothing was saved. See the errors below.")
            return self.render(request, pending, status=400)
        del request.session[SESSION_KEY]
        messages.success(request, f"Imported {pending['filename']}: {result.summary()}.")
        if len(result.warnings) > 3:  # one line, not a wall of warnings; the preview listed them all
            messages.warning(request, f"{len(result.warnings)} entries overlap others, e.g. {result.warnings[0]}")
        else:
            for warning in result.warnings:
                messages.warning(request, warning)
        return redirect("policy:restrictions")

    def render(self, request, pending, status=200):
        result = pending["result"]
        error_count = result.get("error_count", len(result["errors"]))  # previews stored before the count
        context = {
            "pending": pending,
            "network_list": LISTS[pending["list"]],
            "result": result,
            "errors": result["errors"][:SHOWN_ERRORS],
            "error_count": error_count,
            "more_errors": max(0, error_count - SHOWN_ERRORS),
            "more_removed": max(0, result["deleted"] - len(result.get("removed", ()))),
            "confirm_removal": needs_removal_confirmation(result),
            "dangerous": is_dangerous(result),
            "confirm_word": safety.CONFIRM_WORD,
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
