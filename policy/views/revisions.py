"""Pages of the revision history: list, one revision, a diff of any two, and rollback."""

import json
import threading
from collections import OrderedDict

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View
from django.views.generic import ListView

from policy import safety
from policy.audit import update_context
from policy.diffs import SNAPSHOT_SECTIONS, shortened, snapshot_diff, without_secrets
from policy.models import PolicyRevision, RoutingRestrictions
from policy.revisions import rollback_to
from policy.risks import policy_dangers
from policy.roles import EditorRequiredMixin, ViewerRequiredMixin, can_edit


class RevisionListView(ViewerRequiredMixin, ListView):
    model = PolicyRevision
    paginate_by = 50
    template_name = "policy/revision_list.html"


ENTRIES_PER_PAGE = 100
DOCUMENTS_KEPT = 3  # a revision, the one before, and the next one looked at: about 15 MB each at 10,000 entries
_documents: OrderedDict[tuple[int, str], dict] = OrderedDict()
_documents_lock = threading.Lock()


def revision_document(revision: PolicyRevision) -> dict:
    """Return a revision's parsed snapshot, for reading only; the last few are kept.

    A revision never changes (its SHA-256 names its text), and paging through the lists of one
    revision, or diffing it with the one before, would otherwise parse 3 MB per page.
    """
    key = (revision.pk, revision.sha256)
    with _documents_lock:
        if key in _documents:
            _documents.move_to_end(key)
            return _documents[key]
    document = revision.snapshot_data
    with _documents_lock:
        _documents[key] = document
        while len(_documents) > DOCUMENTS_KEPT:
            _documents.popitem(last=False)
    return document


DIFF_ITEMS_SHOWN = 50  # per kind of change and list; the rest is counted, and is in the snapshot download


_diffs: OrderedDict[tuple, list] = OrderedDict()


def revision_diff(old: PolicyRevision, new: PolicyRevision) -> list:
    """Return what changed between two revisions; the last few answers are kept, as both never change."""
    key = (old.pk, old.sha256, new.pk, new.sha256)
    with _documents_lock:
        if key in _diffs:
            _diffs.move_to_end(key)
            return _diffs[key]
    changes = snapshot_diff(revision_document(old), revision_document(new))
    with _documents_lock:
        _diffs[key] = changes
        while len(_diffs) > 4 * DOCUMENTS_KEPT:
            _diffs.popitem(last=False)
    return changes


class RevisionDetailView(ViewerRequiredMixin, View):
    """One revision: counts, the changes since the one before, a page of one list, the snapshot as a download.

    A revision of 10,000 entries is a 3 MB snapshot: the page shows a summary and pages, never all of it.
    """

    def get(self, request, serial):
        revision = get_object_or_404(PolicyRevision, serial=serial)
        snapshot = revision_document(revision)
        previous = PolicyRevision.objects.filter(serial__lt=serial).order_by("-serial").first()
        changes = shortened(revision_diff(previous, revision), DIFF_ITEMS_SHOWN) if previous else None
        is_latest = not PolicyRevision.objects.filter(serial__gt=serial).exists()
        section = request.GET.get("list", "trusted_networks")
        if section not in SNAPSHOT_SECTIONS:
            section = "trusted_networks"
        key, title = SNAPSHOT_SECTIONS[section]
        entries = Paginator(without_secrets({section: snapshot[section]})[section], ENTRIES_PER_PAGE)
        context = {
            "revision": revision,
            "previous": previous,
            "changes": changes,
            "sections": [
                {"name": name, "title": name_title, "count": len(snapshot[name])}
                for name, (_, name_title) in SNAPSHOT_SECTIONS.items()
            ],
            "section": {"name": section, "title": title, "key": key},
            "entries": entries.get_page(request.GET.get("page")),
            "relayers": RoutingRestrictions.relayers(snapshot["restrictions"]),
            "is_latest": is_latest,
            # Rolling back to an open relay is a dangerous save like any other: the form asks for the word.
            "dangers": policy_dangers(snapshot) if can_edit(request.user) and not is_latest else [],
            "confirm_word": safety.CONFIRM_WORD,
        }
        return render(request, "policy/revision_detail.html", context)


class RevisionSnapshotView(ViewerRequiredMixin, View):
    def get(self, request, serial):
        """Return the revision's snapshot as JSON, password hashes hidden, as a file to save."""
        revision = get_object_or_404(PolicyRevision, serial=serial)
        text = json.dumps(without_secrets(revision.snapshot_data), indent=2, sort_keys=True, ensure_ascii=False)
        response = HttpResponse(text + "\n", content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="relayadmin-revision-{serial}.json"'
        return response


class RevisionDiffView(ViewerRequiredMixin, View):
    def get(self, request):
        try:
            old_serial, new_serial = sorted(int(request.GET[name]) for name in ("a", "b"))
        except (KeyError, ValueError):
            raise Http404("Choose two revisions to compare.") from None
        old = get_object_or_404(PolicyRevision, serial=old_serial)
        new = get_object_or_404(PolicyRevision, serial=new_serial)
        changes = revision_diff(old, new)
        return render(request, "policy/revision_diff.html", {"old": old, "new": new, "changes": changes})


class RevisionRollbackView(EditorRequiredMixin, View):
    def post(self, request, serial):
        get_object_or_404(PolicyRevision, serial=serial)
        update_context(reason=request.POST.get("reason", "").strip()[:500] or f"rollback to revision {serial}")
        try:
            with safety.guard(confirmed=safety.is_confirmed_word(request.POST.get("confirm_word"))):
                revision = rollback_to(serial)
        except safety.DangerousChange:
            messages.error(
                request,
                f"Nothing was changed: revision {serial} is an open relay. Type {safety.CONFIRM_WORD} to roll back.",
            )
            return redirect("policy:revision", serial=serial)
        if revision is None:
            messages.info(request, f"The policy already equals revision {serial}; nothing was changed.")
            return redirect("policy:revision", serial=serial)
        messages.success(request, f"Rolled back: revision {revision.serial} restores revision {serial}.")
        return redirect("policy:revision", serial=revision.serial)
