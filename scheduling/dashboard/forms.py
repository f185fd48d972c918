"""The dashboard's two forms: a pause needs a note saying why; a cron edit must be a cron."""
from __future__ import annotations

from django import forms

from scheduling import cron

PAUSE_NOTE_MAX = 500


class PauseForm(forms.Form):
    note = forms.CharField(
        max_length=PAUSE_NOTE_MAX, strip=True,
        widget=forms.TextInput(attrs={"size": 50, "placeholder": "Why? (required, e.g. winter break)"}),
        help_text="Required: says why the job is paused (shown on the dashboard and in the history).",
        error_messages={"required": "A pause needs a note saying why."},
    )


class CronForm(forms.Form):
    cron = forms.CharField(
        max_length=100, strip=True,
        widget=forms.TextInput(attrs={"size": 30, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Five fields: minute hour day-of-month month day-of-week, in the district's time zone. "
                  "MON#1 is the first Monday of the month.",
        error_messages={"required": "Enter a cron expression."},
    )

    def clean_cron(self) -> str:
        try:
            return cron.validate(self.cleaned_data["cron"])
        except cron.BadCron as exc:
            raise forms.ValidationError(str(exc)) from None


HOLD_NOTE_MAX = 1000


class HoldDecisionForm(forms.Form):
    """Releasing or discarding a held run's messages needs a note saying why (audited)."""

    note = forms.CharField(
        max_length=HOLD_NOTE_MAX, strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": "Why? (required, recorded with your name)"}),
        error_messages={"required": "A note is required: say why these messages are released or discarded."},
    )
