"""The "would this relay?" page."""

from django.shortcuts import render
from django.views import View

from policy.forms import CheckForm
from policy.roles import ViewerRequiredMixin
from policy.tester import check


class CheckView(ViewerRequiredMixin, View):
    """A read-only question, so a GET form: results can be bookmarked and shared."""

    def get(self, request):
        form = CheckForm(request.GET or None)
        result = check(form.probe()) if form.is_valid() else None
        return render(request, "policy/check.html", {"form": form, "result": result})
