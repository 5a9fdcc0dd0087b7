"""Start the open-relay self-test from the dashboard (editors only) and show its report."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from policy.models import SelfTestRun
from policy.roles import EditorRequiredMixin, ViewerRequiredMixin
from policy.selftests import SelfTestRefused, default_target, run_selftest


class SelfTestStartView(EditorRequiredMixin, View):
    def post(self, request):
        target = request.POST.get("target", "").strip() or default_target()
        try:
            run = run_selftest(target, user=request.user)
        except SelfTestRefused as exc:
            messages.error(request, str(exc))
            return redirect("policy:dashboard")
        return redirect("policy:selftest", pk=run.pk)


class SelfTestDetailView(ViewerRequiredMixin, View):
    def get(self, request, pk):
        return render(request, "policy/selftest_detail.html", {"run": get_object_or_404(SelfTestRun, pk=pk)})
