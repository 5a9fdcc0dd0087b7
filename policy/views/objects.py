"""The add, edit and remove pages shared by domains, SMTP users and blocklists."""

from typing import Any

from django.contrib.messages.views import SuccessMessageMixin
from django.forms import Form

from policy.roles import EditorRequiredMixin
from policy.views.audit import history_for


class CreatedByMixin:
    """Record who created the object."""

    def form_valid(self, form):
        form.instance.created_by = self.request.user
        return super().form_valid(form)


class ObjectEditMixin(EditorRequiredMixin, SuccessMessageMixin):
    """Shared by the add, edit and remove pages of domains, SMTP users and blocklists."""

    # Typed to fit the generic views these mixins are combined with: create, update and delete (whose form differs).
    template_name: str | None = "policy/object_form.html"

    def get_context_data(self, **kwargs):
        history = history_for(self.object) if getattr(self, "object", None) else []
        return super().get_context_data(opts=self.model._meta, history=history, **kwargs)


class ObjectDeleteMixin:
    """The remove page: a confirmation without fields. List it before the object's edit mixin."""

    # Typed as the generic views declare them, so that this mixin may come first.
    form_class: type[Any] | None = Form
    template_name: str | None = "policy/object_confirm_delete.html"
