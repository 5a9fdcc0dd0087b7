"""Give each request an id and make it the audit context: who, from where, which request."""

import re
import uuid

from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from policy.audit import audit_context
from policy.revisions import policy_change
from policy.snapshot import UnpublishablePolicy

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        source = "api" if request.path.startswith("/api/") else "web"
        # request.user is lazy: it is only resolved when an entry is written.
        with audit_context(
            source=source, user=request.user, remote_addr=request.META.get("REMOTE_ADDR"), request_id=request_id
        ):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class PolicyChangeMiddleware:
    """Run each writing request as one policy change: one transaction, at most one revision.

    Reads pass straight through. A 5xx response rolls the request's writes back. A change whose
    snapshot relayd would refuse is rolled back too and answered 400, saying which entry; pages
    that can show it beside their form catch it earlier (revisions.settle()).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD", "OPTIONS") or _owns_policy_change(request):
            return self.get_response(request)
        try:
            with policy_change():
                response = self.get_response(request)
                if response.status_code >= 500:
                    transaction.set_rollback(True)
        except UnpublishablePolicy as exc:
            return self.refusal(request, exc)
        return response

    def process_exception(self, request, exception):
        """Answer a refusal raised inside the view (revisions.settle()) as the end of the change would."""
        if isinstance(exception, UnpublishablePolicy):
            return self.refusal(request, exception)
        return None

    @staticmethod
    def refusal(request, error: UnpublishablePolicy):
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": error.messages[0]}, status=400)
        return render(request, "policy/unpublishable.html", {"message": error.messages[0]}, status=400)


def own_policy_change(view):
    """Mark a view method (or DRF action) that wraps its own writes in policy_change().

    The middleware then opens no transaction around it, so that it can check its input
    first, holding no lock: on SQLite every transaction takes the write lock when it starts,
    and a dry run of 10,000 rows would otherwise block every other writer, relayd's status
    reports included (issue 11, finding 6).
    """
    view.own_policy_change = True
    return view


def _owns_policy_change(request) -> bool:
    try:
        view: object = resolve(request.path_info).func
    except Resolver404:
        return False
    view_class = getattr(view, "cls", None) or getattr(view, "view_class", None)
    if view_class is not None:
        method = request.method.lower()
        # A DRF viewset route maps HTTP methods to actions; a class-based view has a method per verb.
        name = (getattr(view, "actions", None) or {}).get(method, method)
        view = getattr(view_class, name, None)
    return getattr(view, "own_policy_change", False)
