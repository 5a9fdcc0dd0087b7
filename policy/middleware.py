"""Give each request an id and make it the audit context: who, from where, which request."""

import re
import uuid

from django.db import transaction

from policy.audit import audit_context
from policy.revisions import policy_change

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

    Reads pass straight through. A 5xx response rolls the request's writes back.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return self.get_response(request)
        with policy_change():
            response = self.get_response(request)
            if response.status_code >= 500:
                transaction.set_rollback(True)
        return response
