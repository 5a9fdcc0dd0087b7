"""Forms of the Users & roles pages: a user's name, e-mail, role and whether the account may log in."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator

from policy.roles import ROLE_CHOICES, SUPERUSER, VIEWER, role_of

User = get_user_model()


class UserForm(forms.ModelForm):
    role = forms.ChoiceField(
        label="Role",
        choices=ROLE_CHOICES,
        initial=VIEWER,
        help_text="Viewers read everything; editors change the policy; superusers also manage users.",
    )

    class Meta:
        model = User
        fields = ["username", "email", "is_active"]
        labels = {"is_active": "Active: this account may log in"}
        help_texts = {"username": "Letters, digits and @ . + - _ only.", "email": ""}

    def __init__(self, *args, acting_user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.acting_user = acting_user
        self.fields["username"].validators = [UnicodeUsernameValidator()]
        if self.instance.pk:
            self.fields["role"].initial = role_of(self.instance)

    def clean(self):
        cleaned = super().clean()
        # An admin who demotes or locks out their own account could leave nobody to manage users.
        if self.instance.pk and self.instance.pk == getattr(self.acting_user, "pk", None):
            if cleaned.get("role") != SUPERUSER:
                self.add_error("role", "You cannot take the superuser role from your own account.")
            if cleaned.get("is_active") is False:
                self.add_error("is_active", "You cannot deactivate your own account.")
        return cleaned
