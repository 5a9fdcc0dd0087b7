"""Users & roles: superusers list users, give each one role, and reset passwords (a new one is shown once)."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.crypto import get_random_string
from django.views import View

from policy.roles import SuperuserRequiredMixin, assign_role, role_of
from policy.user_forms import UserForm

User = get_user_model()


def new_password() -> str:
    """Return a random password for a new account or a reset; the admin passes it on once."""
    return get_random_string(20)


def show_password_once(request, user, password, what):
    response = render(request, "policy/user_password.html", {"account": user, "password": password, "what": what})
    response["Cache-Control"] = "no-store"  # the password must not stay in any cache
    return response


class UserListView(SuperuserRequiredMixin, View):
    def get(self, request):
        users = User.objects.prefetch_related("groups").order_by("username")
        rows = [(user, role_of(user)) for user in users]
        return render(request, "policy/user_list.html", {"rows": rows})


class UserCreateView(SuperuserRequiredMixin, View):
    def get(self, request):
        return self.render(request, UserForm(initial={"is_active": True}, acting_user=request.user))

    def post(self, request):
        form = UserForm(request.POST, acting_user=request.user)
        if not form.is_valid():
            return self.render(request, form, status=400)
        password = new_password()
        with transaction.atomic():
            user = form.save(commit=False)
            user.set_password(password)
            user.save()
            assign_role(user, form.cleaned_data["role"])
        return show_password_once(request, user, password, "created")

    def render(self, request, form, status=200):
        return render(request, "policy/user_form.html", {"form": form, "account": None}, status=status)


class UserEditView(SuperuserRequiredMixin, View):
    def get(self, request, pk):
        account = get_object_or_404(User, pk=pk)
        return self.render(request, account, UserForm(instance=account, acting_user=request.user))

    def post(self, request, pk):
        account = get_object_or_404(User, pk=pk)
        form = UserForm(request.POST, instance=account, acting_user=request.user)
        if not form.is_valid():
            return self.render(request, account, form, status=400)
        with transaction.atomic():
            form.save()
            assign_role(account, form.cleaned_data["role"])
        messages.success(request, f"Saved {account.username}: {role_of(account) or 'no role'}.")
        return redirect("policy:users")

    def render(self, request, account, form, status=200):
        return render(request, "policy/user_form.html", {"form": form, "account": account}, status=status)


class UserPasswordResetView(SuperuserRequiredMixin, View):
    def post(self, request, pk):
        account = get_object_or_404(User, pk=pk)
        if account.pk == request.user.pk:
            messages.error(request, "Change your own password on the “Change password” page.")
            return redirect(reverse("policy:user-edit", args=[pk]))
        password = new_password()
        account.set_password(password)
        account.save(update_fields=["password"])
        return show_password_once(request, account, password, "reset")
