"""Admin forms. The field rules are schedules.validation's, run through the model's clean()
by ModelForm (so the admin answers exactly what the API answers), plus the checks only a form
needs: the dataset must belong to the import's owner."""

from __future__ import annotations

from typing import Any

from django import forms

from .credentials import KIND_CHOICES
from .models import ScheduledImport
from .services import as_it_is_now, import_version
from .validation import (
    SCHEDULE_FIELDS,
    fields_of_the_other_schedule,
    undeliverable_notifications,
    validate_callback_url_form,
)

# The credential's parts in the form: (form field, the credential's part) per kind.
CREDENTIAL_PARTS = {
    "basic": (("credential_username", "username"), ("credential_password", "password")),
    "bearer": (("credential_password", "token"),),
    "header": (("credential_username", "name"), ("credential_password", "value")),
    "password": (("credential_password", "password"),),
    "private_key": (
        ("credential_private_key", "private_key"),
        ("credential_password", "passphrase"),
    ),
}


def _secret_input() -> forms.PasswordInput:
    # render_value=False: a saved secret never travels back to the browser.
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


# The fields that carry a credential's secret parts (never shown, never in an error report).
SECRET_FIELDS = ("credential_password", "credential_private_key")


class CallbackUrlField(forms.URLField):
    default_validators = [validate_callback_url_form]


class DelimiterField(forms.CharField):
    """One character, a tab included, which a browser's text box cannot take (the Tab key
    moves on) and which Django's stripping made blank: `\\t` or `tab` stand for it."""

    TAB_WORDS = ("\\t", "tab")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", 'one character; \\t or "tab" for a tab (a TSV file)')
        super().__init__(strip=False, max_length=3, **kwargs)

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        return "\t" if text.strip().lower() in self.TAB_WORDS else text

    def prepare_value(self, value: Any) -> Any:
        return "\\t" if value == "\t" else value


class ShallowJSONField(forms.JSONField):
    """Django's JSON field, refusing what nests too deep to read: `[` 5,000 times raised
    RecursionError in the json module, a 500 (the API refuses it: schedules.api.parsers)."""

    TOO_DEEP = "this JSON nests deeper than any import's settings (a list of objects)"

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(self.TOO_DEEP) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return super().has_changed(initial, data)
        except RecursionError:
            return True


class ScheduledImportAdminForm(forms.ModelForm):
    # Not a URLField: sftp:// and file:/// drop-folder paths are sources too
    # (schedules.validation.validate_source_url decides).
    source_url = forms.CharField(
        max_length=2000,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="http(s) URL, sftp://user@host/path, or file:///… in a drop folder "
        "(IMPORT_DROP_DIRS); a glob in the file name (products_*.csv) takes the newest match "
        "(with 'move processed', the oldest delivery waiting)",
    )
    # Write-only: the fields are always empty; filling them replaces the credential.
    # Named as the model's property, so that the model's "credential" errors land here.
    credential = forms.ChoiceField(
        choices=[("", "(keep as it is)"), *KIND_CHOICES, ("none", "none (remove it)")],
        required=False,
        label="Set credential",
        help_text="basic: user name and password; bearer: token in Password; header: header "
        "name in User name, its value in Password; SFTP password; SFTP private key (with its "
        "passphrase in Password, if any). Saved encrypted, never shown again.",
    )
    credential_username = forms.CharField(required=False, label="User name / header name")
    # Not stripped: a secret is kept as typed (a password may end with a space), and a header
    # value with spaces around it is refused by the credential's rule, not silently changed.
    credential_password = forms.CharField(
        required=False,
        strip=False,
        widget=_secret_input(),
        label="Password / token / value / passphrase",
    )
    credential_private_key = forms.CharField(
        required=False,
        label="Private key",
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
    )
    callback_url = CallbackUrlField(
        max_length=2000,
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 80}),
    )

    delimiter = DelimiterField()
    # The version of the import the page showed (the API's ETag). Django reads "what the form
    # changed" against the import as it is at the save, not as the page showed it: a field
    # another client changed since the page opened was written back as the page had it, and
    # an owner's description edited through the API (with its If-Match) was undone, unsaid.
    version = forms.CharField(required=False, widget=forms.HiddenInput)

    CHANGED_SINCE = (
        "This import was changed since you opened this page (by its owner, the API or another "
        "admin), so nothing was saved. Open the page again to see the import as it is now, and "
        "make your change there."
    )

    class Meta:
        model = ScheduledImport
        fields = [
            "owner", "name", "description", "source_url", "source_member", "move_processed",
            "delimiter", "encoding",
            "has_header", "dataset", "key_column", "columns", "mode", "schedule_type",
            "cron_expression", "interval_seconds", "timezone", "max_retries",
            "retry_backoff_seconds", "retry_backoff_max_seconds", "timeout_seconds", "overlap",
            "catchup", "alert_after_failures", "callback_url", "notify_on", "notify_channels",
        ]  # fmt: skip
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
        }
        field_classes = {
            "columns": ShallowJSONField,
            "notify_on": ShallowJSONField,
            "notify_channels": ShallowJSONField,
        }
        help_texts = {
            "cron_expression": "5 fields: minute hour day-of-month month day-of-week, "
            "evaluated in the import's timezone",
            "interval_seconds": "for an interval schedule",
            "timezone": "IANA name, e.g. Europe/Berlin",
            "source_member": "the file to import from a zip archive that holds several",
            "move_processed": "drop folders: move the file to processed/ after a run that "
            "committed its rows; a glob then takes its deliveries oldest first",
            "notify_on": 'a list out of "failed", "partial", "succeeded", "recovered", "late"',
            "notify_channels": 'a list out of "email", "webhook" (to the callback URL, signed)',
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["version"].initial = import_version(self.instance)
        if "dataset" in self.fields:
            # Dataset names are unique per owner only: say whose each one is.
            field = self.fields["dataset"]
            field.queryset = field.queryset.select_related("owner").order_by("owner", "name")
            field.label_from_instance = lambda dataset: f"{dataset.owner} / {dataset.name}"

    def clean_source_url(self) -> str:
        # A URL typed without a scheme gets https (as Django's URLField with assume_scheme).
        url = self.cleaned_data["source_url"].strip()
        return url if "://" in url else f"https://{url}"

    def clean(self) -> dict[str, Any]:
        shown = self.cleaned_data.get("version")
        if shown and self.instance.pk is not None and shown != import_version(self.instance):
            raise forms.ValidationError(self.CHANGED_SINCE, code="changed_since")
        # Before ModelForm's clean, which validates the instance (credential included).
        kind = self.cleaned_data.get("credential")
        if kind == "none":
            self.instance.credential = None
        elif kind:
            credential = {"kind": kind}
            for field, part in CREDENTIAL_PARTS[kind]:
                if self.cleaned_data.get(field):
                    credential[part] = self.cleaned_data[field]
            self.instance.credential = credential
        if self.instance.pk is not None and {"key_column", "mode", "dataset"} & set(
            self.changed_data
        ):
            # The datasets' locks before the import is validated (the admin saves in one
            # transaction): a key changed during a merge is judged on what the merge wrote
            # (services.as_it_is_now; review).
            moved_to = self.cleaned_data.get("dataset")
            as_it_is_now(self.instance, datasets=[moved_to.pk] if moved_to else [])
        cleaned = super().clean()
        # A field of the other schedule type that the operator changed: said, not dropped. One
        # left as it was when the type switched is cleared, as the model does.
        changed = {name: cleaned.get(name) for name in SCHEDULE_FIELDS if name in self.changed_data}
        wrong = fields_of_the_other_schedule(cleaned.get("schedule_type"), changed)
        for field, its in wrong.items():
            self.add_error(
                field,
                f"only for the {its} schedule type: choose it as the schedule type to switch, "
                "or leave this field as it was",
            )
        notifying = {"notify_on": [], "notify_channels": [], "callback_url": ""}
        changed = notifying.keys() & set(self.changed_data)
        if changed and not notifying.keys() & self.errors.keys():
            sent = {name: cleaned.get(name) or empty for name, empty in notifying.items()}
            if nowhere := undeliverable_notifications(**sent):
                self.add_error("notify_channels", nowhere)
        owner, dataset = cleaned.get("owner"), cleaned.get("dataset")
        if owner and dataset and dataset.owner_id != owner.pk:
            self.add_error("dataset", "this dataset belongs to another user")
        return cleaned
