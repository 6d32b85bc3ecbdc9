from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    email = forms.EmailField(help_text="The welcome email goes here (printed by the worker).")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
