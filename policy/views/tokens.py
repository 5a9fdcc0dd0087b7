"""The API tokens page: create a token (its key is shown once) and revoke tokens."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from policy import services
from policy.forms import ApiTokenForm
from policy.models import ApiToken
from policy.roles import ViewerRequiredMixin


def visible_tokens(user):
    """Return the tokens this user may see and revoke: their own, or every token for a superuser."""
    tokens = ApiToken.objects.select_related("user")
    return tokens if user.is_superuser else tokens.filter(user=user)


class ApiTokenView(ViewerRequiredMixin, View):
    template_name = "policy/api_tokens.html"

    def get(self, request):
        return self.render(request, ApiTokenForm(user=request.user))

    def post(self, request):
        form = ApiTokenForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                token, key = services.issue_api_token(request.user, **form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                response = self.render(request, ApiTokenForm(user=request.user), new_token=token, new_key=key)
                response["Cache-Control"] = "no-store"  # the key must not stay in any cache
                return response
        return self.render(request, form, status=400)

    def render(self, request, form, status=200, **context):
        tokens = visible_tokens(request.user)
        return render(request, self.template_name, {"form": form, "tokens": tokens, **context}, status=status)


class ApiTokenRevokeView(ViewerRequiredMixin, View):
    """Revoke a token after a confirmation page that names the relayd nodes that report with it."""

    template_name = "policy/api_token_revoke.html"

    def get(self, request, pk):
        token = get_object_or_404(visible_tokens(request.user), pk=pk)
        nodes = [node.name for node in token.nodes.order_by("name")]
        return render(request, self.template_name, {"token": token, "nodes": nodes})

    def post(self, request, pk):
        token = get_object_or_404(visible_tokens(request.user), pk=pk)
        nodes = [node.name for node in token.nodes.order_by("name")]
        token.delete()
        stopped = f" {_nodes_sentence(nodes)} no longer receive policy updates." if nodes else ""
        messages.success(request, f"Token “{token.name}” revoked: requests with its key now get 401.{stopped}")
        return redirect("policy:api-tokens")


def _nodes_sentence(nodes: list[str]) -> str:
    names = ", ".join(f"“{name}”" for name in nodes)
    return f"The relayd node {names} will" if len(nodes) == 1 else f"The relayd nodes {names} will"
