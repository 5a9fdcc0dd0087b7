"""Pages of the dashboard. Views stay thin: policy operations live in `policy.services`."""

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views import View
from django.views.generic import (
    CreateView,
    DeleteView,
    ListView,
    TemplateView,
    UpdateView,
)

from policy import addresses, daemons, safety, services, traffic, usage
from policy.audit import update_context
from policy.draft import LIST_KINDS, Draft
from policy.forms import CheckForm, LocalDomainForm, RestrictionsForm, SmtpUserForm
from policy.models import LocalDomain, RelayNode, SelfTestRun, SmtpUser
from policy.risks import analyse, grouped, open_relay_headline
from policy.roles import EditorRequiredMixin, ViewerRequiredMixin, require_editor
from policy.selftests import allowed_targets, default_target, latest_serial
from policy.tester import check, current_snapshot
from policy.views.audit import history_for
from policy.views.objects import CreatedByMixin, ObjectDeleteMixin, ObjectEditMixin
from relayd.hostport import join_host_port

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

LOCALHOST_NETWORKS = ("127.0.0.1/32", "::1/128")
ROWS_PER_PAGE = 100


class DashboardView(ViewerRequiredMixin, TemplateView):
    template_name = "policy/dashboard.html"

    def get_context_data(self, **kwargs):
        last_selftest = SelfTestRun.objects.first()
        serial = latest_serial()
        stale = last_selftest is not None and last_selftest.is_stale(serial)
        # A result about an older policy is no evidence about this one (say, after a rollback).
        evidence = None if stale else last_selftest
        risks = analyse(
            current_snapshot(), tls_ready=daemons.tls_ready(), selftest=evidence, nodes=daemons.client_sources()
        )
        return super().get_context_data(
            summary=services.policy_summary(),
            risks=risks,
            risk_groups=grouped(risks),
            open_relay=open_relay_headline(risks),
            nodes=daemons.node_statuses(),
            chart=traffic.traffic_chart(),
            senders=usage.top_senders(),
            last_selftest=last_selftest,
            selftest_stale=stale,
            latest_serial=serial,
            selftest_target=default_target(),
            selftest_targets=sorted(join_host_port(*target) for target in allowed_targets()),
            **kwargs,
        )


class RoutingRestrictionsView(ViewerRequiredMixin, View):
    """The Routing Restrictions dialog: checkboxes and three lists, applied only on OK.

    Every button on the page submits the one form, so ticking a checkbox and then pressing
    Add or Remove keeps the tick in the draft instead of losing it.
    """

    template_name = "policy/restrictions.html"

    def get(self, request):
        draft = Draft.load(request.session)
        return self.render(request, draft, RestrictionsForm(initial=draft.effective_flags()))

    def post(self, request):
        require_editor(request.user)
        draft = Draft.load(request.session)
        form = RestrictionsForm(request.POST)
        form.is_valid()  # checkboxes only: always valid
        draft.set_flags(form.cleaned_data)
        action, _, target = request.POST.get("action", "").partition(":")
        if action == "cancel":
            if draft.is_dirty and "confirm_cancel" not in request.POST:
                # Ask first: Cancel throws away every pending change of the dialog.
                draft.store(request.session)
                return self.render(request, draft, form, confirm_cancel=True)
            Draft.discard(request.session)
            messages.info(request, "Changes discarded. Nothing was saved.")
            return redirect("policy:restrictions")
        if action == "ok":
            return self.apply(request, draft, form)
        if action == "check":
            draft.store(request.session)
            return self.render(request, draft, form, check_form=CheckForm(request.POST, prefix="check"))
        if action == "add-localhost":
            self.add_localhost(request, draft)
        elif action == "add":
            self.require_kind(target)
            draft.store(request.session)
            return redirect("policy:restrictions-entry-add", kind=target)
        elif action in ("edit", "remove", "undo"):
            kind, _, key = target.partition(":")
            self.require_kind(kind)
            if action == "edit":
                draft.store(request.session)
                return redirect("policy:restrictions-entry-edit", kind=kind, key=key)
            (draft.remove if action == "remove" else draft.undo_remove)(kind, key)
        draft.store(request.session)
        return redirect("policy:restrictions")

    def apply(self, request, draft, form):
        if not draft.is_dirty:
            messages.info(request, "No changes to save.")
            return redirect("policy:dashboard")
        update_context(reason=request.POST.get("reason", "").strip()[:500])
        try:
            with safety.guard(confirmed=safety.is_confirmed_word(request.POST.get("confirm_word"))):
                services.apply_routing_draft(draft, request.user)
        except ValidationError as exc:
            return self.render(request, draft, form, errors=exc.messages, status=400)
        except safety.DangerousChange as exc:
            # Nothing was saved: show the dangers and ask for the word (a plain OK lands here again).
            draft.store(request.session)
            return self.render(request, draft, form, dangers=exc.risks, status=400)
        Draft.discard(request.session)
        messages.success(request, "Routing restrictions saved.")
        return redirect("policy:dashboard")

    def add_localhost(self, request, draft):
        listing = draft.listing("trusted")
        added = [network for network in LOCALHOST_NETWORKS if not listing.duplicate(addresses.parse_network(network))]
        for network in added:
            draft.add(
                "trusted",
                {
                    "network": network,
                    "description": "localhost",
                    "enabled": True,
                    "expires_at": None,
                    "open_relay_override": False,
                },
            )
        if added:
            messages.info(request, f"Added {' and '.join(added)}. Press OK to save.")
        else:
            messages.info(request, "localhost (127.0.0.1 and ::1) is already trusted.")

    @staticmethod
    def require_kind(kind):
        if kind not in LIST_KINDS:
            raise Http404("No such list.")

    def render(self, request, draft, form, errors=(), status=200, check_form=None, dangers=(), confirm_cancel=False):
        lists = [list_page(request, draft, kind) for kind in LIST_KINDS.values()]
        check_result, risks = None, []
        try:
            snapshot = services.draft_snapshot(draft, request.user) if draft.is_dirty else current_snapshot()
        except ValidationError as exc:
            errors = errors or exc.messages  # the draft would not save: say why, as OK would
        else:
            risks = analyse(snapshot, tls_ready=daemons.tls_ready(), nodes=daemons.client_sources())
            if check_form is not None and check_form.is_valid():
                check_result = check(check_form.probe(), snapshot)
        context = {
            "form": form,
            "lists": lists,
            "draft": draft,
            "errors": errors,
            "check_form": tester_form(check_form or CheckForm(prefix="check")),
            "result": check_result,
            "pending": draft.is_dirty,
            "risks": risks,
            "risk_groups": grouped(risks),
            "dangers": dangers,
            "confirm_cancel": confirm_cancel,
            "pending_count": draft.change_count(),
            "confirm_word": safety.CONFIRM_WORD,
        }
        return render(request, self.template_name, context, status=status)


def list_page(request, draft, kind) -> dict:
    """Return one list of the dialog: the page asked for, of the entries matching its search box."""
    search = request.GET.get(f"{kind.name}_q", "")[:100]
    page = Paginator(draft.rows(kind.name, search), ROWS_PER_PAGE).get_page(request.GET.get(f"{kind.name}_page"))

    def page_url(number):
        query = request.GET.copy()
        query[f"{kind.name}_page"] = number
        return f"?{query.urlencode()}#list-{kind.name}"

    return {
        "kind": kind,
        "page": page,
        "search": search,
        # The other lists' searches ride along, so that searching one list keeps the others as they are.
        "other_searches": {
            key: value for key, value in request.GET.items() if key.endswith("_q") and key != f"{kind.name}_q"
        },
        "previous_url": page_url(page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_url(page.next_page_number()) if page.has_next() else "",
    }


def tester_form(form: CheckForm) -> CheckForm:
    """Make the tester's fields members of its own form (#tester-form), though they sit inside the dialog's."""
    for field in form.fields.values():
        field.widget.attrs["form"] = "tester-form"
    return form


class RoutingEntryView(EditorRequiredMixin, View):
    """The dialog's Add/Edit sub-dialog: OK puts the entry into the draft, Cancel goes back."""

    template_name = "policy/restrictions_entry.html"

    def dispatch(self, request, kind, key=None):
        if kind not in LIST_KINDS:
            raise Http404("No such list.")
        self.kind = LIST_KINDS[kind]
        self.key = key
        return super().dispatch(request)

    def get_form(self, draft, data=None):
        initial = None
        if self.key is not None:
            row = draft.row(self.kind.name, self.key)
            if row is None:
                raise Http404("No such entry.")
            initial = self.kind.form.initial_from(row.data)
        listed = draft.listing(self.kind.name, excluding=self.key)
        return self.kind.form(data, initial=initial, listed=listed)

    def get(self, request):
        return self.render(request, self.get_form(Draft.load(request.session)))

    def post(self, request):
        if "cancel" in request.POST:
            return redirect("policy:restrictions")
        draft = Draft.load(request.session)
        form = self.get_form(draft, request.POST)
        if not form.is_valid():
            return self.render(request, form, status=400)
        if self.key is None:
            draft.add(self.kind.name, form.entry_data())
        else:
            draft.change(self.kind.name, self.key, form.entry_data())
        draft.store(request.session)
        for warning in form.warnings:
            messages.warning(request, warning)
        messages.info(request, "Pending until you press OK.")
        return redirect("policy:restrictions")

    def render(self, request, form, status=200):
        saved = self.kind.model.objects.filter(pk=self.key).first() if self.key and self.key.isdigit() else None
        history = history_for(saved) if saved else []
        context = {"form": form, "kind": self.kind, "editing": self.key is not None, "history": history}
        return render(request, self.template_name, context, status=status)


class LocalDomainListView(ViewerRequiredMixin, ListView):
    model = LocalDomain
    paginate_by = ROWS_PER_PAGE
    template_name = "policy/domain_list.html"


class LocalDomainEditMixin(ObjectEditMixin):
    model = LocalDomain
    form_class: type[Any] | None = LocalDomainForm
    success_url: "_StrOrPromise | None" = reverse_lazy("policy:domains")
    success_message = "Local domain %(domain)s saved."


class LocalDomainCreateView(LocalDomainEditMixin, CreatedByMixin, CreateView):
    pass


class LocalDomainUpdateView(LocalDomainEditMixin, UpdateView):
    pass


class LocalDomainDeleteView(ObjectDeleteMixin, LocalDomainEditMixin, DeleteView):
    success_message = "Local domain removed."


class SmtpUserListView(ViewerRequiredMixin, ListView):
    model = SmtpUser
    paginate_by = ROWS_PER_PAGE
    template_name = "policy/smtpuser_list.html"


class SmtpUserEditMixin(ObjectEditMixin):
    model = SmtpUser
    form_class: type[Any] | None = SmtpUserForm
    success_url: "_StrOrPromise | None" = reverse_lazy("policy:smtp-users")
    success_message = "SMTP user %(username)s saved."


class SmtpUserCreateView(SmtpUserEditMixin, CreatedByMixin, CreateView):
    pass


class SmtpUserUpdateView(SmtpUserEditMixin, UpdateView):
    pass


class SmtpUserDeleteView(ObjectDeleteMixin, SmtpUserEditMixin, DeleteView):
    success_message = "SMTP user removed."


class NodeForgetView(ObjectDeleteMixin, EditorRequiredMixin, DeleteView):
    """Forget a relayd node taken out of service, after a confirmation that says what that does."""

    model = RelayNode
    success_url = reverse_lazy("policy:dashboard")

    def get_context_data(self, **kwargs):
        consequence = (
            "Its status and traffic history leave the dashboard, and its place under RELAYADMIN_MAX_NODES is "
            "free again. If it still runs, it reappears with its next report: revoke its token to stop it."
        )
        return super().get_context_data(opts=self.model._meta, consequence=consequence, **kwargs)

    def form_valid(self, form):
        daemons.forget(self.object)
        messages.success(self.request, f"relayd node “{self.object.name}” forgotten.")
        return redirect(self.success_url)
