"""The Reputation page: each watched address against each DNS blocklist, history, and "Check now" for editors."""

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.messages.views import SuccessMessageMixin
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse_lazy
from django.views import View
from django.views.generic import CreateView, DeleteView, UpdateView

from policy import reputation
from policy.models import Blocklist, WatchedAddress
from policy.reputation_forms import BlocklistForm, WatchedAddressForm
from policy.roles import EditorRequiredMixin, ViewerRequiredMixin
from policy.views.audit import history_for
from policy.views.objects import ObjectDeleteMixin, ObjectEditMixin

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise


def page_context(form=None) -> dict:
    lists, rows = reputation.matrix()
    return {
        "lists": lists,
        "rows": rows,
        "form": form or WatchedAddressForm(),
        "suggestions": reputation.suggestions(),
        "check": reputation.latest_check(),
    }


class ReputationView(ViewerRequiredMixin, View):
    def get(self, request):
        return render(request, "policy/reputation.html", page_context())


class WatchedAddressAddView(EditorRequiredMixin, View):
    def post(self, request):
        form = WatchedAddressForm(request.POST)
        if not form.is_valid():
            return render(request, "policy/reputation.html", page_context(form), status=400)
        form.instance.created_by = request.user
        address = form.save()
        messages.success(request, f"{address} is watched now; press Check now or wait for the next scheduled check.")
        return redirect("policy:reputation")


class WatchedAddressDeleteView(ObjectDeleteMixin, EditorRequiredMixin, SuccessMessageMixin, DeleteView):
    model = WatchedAddress
    success_url = reverse_lazy("policy:reputation")
    success_message = "The address is no longer watched; its history was removed with it."

    def get_context_data(self, **kwargs):
        return super().get_context_data(opts=self.model._meta, **kwargs)


class WatchedAddressHistoryView(ViewerRequiredMixin, View):
    def get(self, request, pk):
        address = get_object_or_404(WatchedAddress, pk=pk)
        context = {
            "address": address,
            "listings": address.listings.select_related("blocklist"),
            "events": address.events.all()[:500],
            "history": history_for(address),
        }
        return render(request, "policy/reputation_history.html", context)


class CheckNowView(EditorRequiredMixin, View):
    """Start a check in the background and return at once; the page polls CheckStatusView."""

    def post(self, request):
        try:
            reputation.start_background_check()
        except reputation.CheckRefused as exc:
            messages.warning(request, str(exc))
        else:
            messages.info(request, "Checking the blocklists; results appear here when the check ends.")
        return redirect("policy:reputation")


class CheckStatusView(ViewerRequiredMixin, View):
    def get(self, request):
        check = reputation.latest_check()
        if check is None:
            return JsonResponse({"id": None, "running": False, "summary": "never checked"})
        return JsonResponse({"id": check.pk, "running": check.running, "summary": check.summary})


class BlocklistEditMixin(ObjectEditMixin):
    model = Blocklist
    # Typed to fit the generic views this mixin is combined with: create, update and delete (whose form differs).
    form_class: type[Any] | None = BlocklistForm
    success_url: "_StrOrPromise | None" = reverse_lazy("policy:reputation")
    success_message = "Blocklist %(zone)s saved."


class BlocklistCreateView(BlocklistEditMixin, CreateView):
    pass


class BlocklistUpdateView(BlocklistEditMixin, UpdateView):
    pass


class BlocklistDeleteView(ObjectDeleteMixin, BlocklistEditMixin, DeleteView):
    success_message = "Blocklist removed."


# Included by policy/urls.py under reputation/, in the policy namespace.
urlpatterns = [
    path("", ReputationView.as_view(), name="reputation"),
    path("addresses/add/", WatchedAddressAddView.as_view(), name="reputation-address-add"),
    path("addresses/<int:pk>/", WatchedAddressHistoryView.as_view(), name="reputation-address"),
    path("addresses/<int:pk>/delete/", WatchedAddressDeleteView.as_view(), name="reputation-address-delete"),
    path("check/", CheckNowView.as_view(), name="reputation-check"),
    path("check/status/", CheckStatusView.as_view(), name="reputation-check-status"),
    path("lists/add/", BlocklistCreateView.as_view(), name="blocklist-add"),
    path("lists/<int:pk>/edit/", BlocklistUpdateView.as_view(), name="blocklist-edit"),
    path("lists/<int:pk>/delete/", BlocklistDeleteView.as_view(), name="blocklist-delete"),
]
