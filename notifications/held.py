"""The notification outbox's held messages, for the blast-radius guard
(skillcore/held_messages.py states the protocol, scheduling/blast_radius.py decides).

A job run's messages are written held: outbox rows with status ``held`` (any channel: the
drainer claims only pending and deferred rows, so no transport can send a held row) and
digest items with ``held`` set (assembly skips them). Audience: a family message is the
one subject to quiet hours (``quiet_hours``, set at enqueue for every non-staff,
non-emergency recipient); everything else is staff.

Every method is set-based: a fixed number of statements whatever the run's size (release
runs one UPDATE per district of the run's family messages: their quiet-hours windows differ).
"""
from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Count

from notifications import quiet_hours
from notifications.models import DigestItem, Notification, Status
from notifications.rendering import RenderError, render_email
from students.models import District

SAMPLE_FIELDS = ("id", "template", "channel", "quiet_hours", "recipient__first_name", "recipient__last_name",
                 "recipient__username")


def _audience(family: bool) -> str:
    return "families" if family else "staff"


class OutboxHolds:
    name = "notifications"

    @staticmethod
    def _rows(run_id: int):
        return Notification.objects.filter(job_run_id=run_id, status=Status.HELD)

    @staticmethod
    def _items(run_id: int):
        return DigestItem.objects.filter(job_run_id=run_id, held=True)

    def adopt(self, *, run_id: int, from_run_ids: list[int]) -> int:
        if not from_run_ids:
            return 0
        moved = Notification.objects.filter(job_run_id__in=from_run_ids, status=Status.HELD).update(
            job_run_id=run_id, status_reason=f"held with run #{run_id} (a retry of its slot)")
        return moved + DigestItem.objects.filter(job_run_id__in=from_run_ids, held=True).update(job_run_id=run_id)

    def counts(self, *, run_id: int) -> dict[str, int]:
        out = {"families": 0, "staff": 0}
        for family, n in self._rows(run_id).order_by().values_list("quiet_hours").annotate(n=Count("id")):
            out[_audience(family)] += n
        for family, n in self._items(run_id).order_by().values_list("quiet_hours").annotate(n=Count("id")):
            out[_audience(family)] += n
        return out

    def breakdown(self, *, run_id: int) -> list[dict]:
        totals: dict[tuple, int] = {}
        for qs in (self._rows(run_id), self._items(run_id)):
            for template, school, family, n in (
                qs.order_by().values_list("template", "student__school__name", "quiet_hours").annotate(n=Count("id"))
            ):
                key = (template, school or "(no school)", _audience(family))
                totals[key] = totals.get(key, 0) + n
        return [{"template": t, "school": s, "audience": a, "count": n}
                for (t, s, a), n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]

    def samples(self, *, run_id: int, limit: int) -> list[dict]:
        rows = list(self._rows(run_id).select_related("recipient", "district", "student").order_by("id")[:limit])
        out = []
        for n in rows:
            try:
                reason = render_email(n).subject  # what the recipient would read first
            except RenderError:
                reason = n.template
            out.append({
                "recipient": n.recipient.get_full_name() or n.recipient.get_username(),
                "audience": _audience(n.quiet_hours), "channel": n.channel, "template": n.template, "reason": reason[:200],
            })
        if len(out) < limit:
            for item in self._items(run_id).select_related("recipient").order_by("id")[:limit - len(out)]:
                out.append({
                    "recipient": item.recipient.get_full_name() or item.recipient.get_username(),
                    "audience": _audience(item.quiet_hours), "channel": item.channel, "template": item.template,
                    "reason": f"{item.template} (in the {item.frequency} digest)",
                })
        return out

    @transaction.atomic
    def release(self, *, run_id: int, now: dt.datetime) -> int:
        """Held rows become pending (staff, or a family message inside its district's
        window) or deferred to the window's next start: the same rule enqueue applies
        (``Notification.earliest_send_at``), computed once per district."""
        rows = self._rows(run_id)
        released = rows.filter(quiet_hours=False).update(status=Status.PENDING, send_after=now, status_reason="")
        released += rows.filter(quiet_hours=True, district__isnull=True).update(
            status=Status.PENDING, send_after=now, status_reason="")
        district_ids = list(rows.filter(quiet_hours=True).order_by().values_list("district_id", flat=True).distinct())
        for district in District.objects.filter(id__in=district_ids):
            start = quiet_hours.next_window_start(now, district.zone, district.notify_window_start,
                                                  district.notify_window_end)
            if start > now:
                fields = {"status": Status.DEFERRED, "send_after": start,
                          "status_reason": f"quiet hours until {start.astimezone(district.zone):%Y-%m-%d %H:%M %Z}"}
            else:
                fields = {"status": Status.PENDING, "send_after": now, "status_reason": ""}
            released += rows.filter(quiet_hours=True, district_id=district.id).update(**fields)
        return released + self._items(run_id).update(held=False)

    @transaction.atomic
    def discard(self, *, run_id: int, now: dt.datetime, reason: str) -> int:
        """Held rows become suppressed (kept: what was not sent, and why); held digest
        lines are deleted (a digest item is only ever something still to send)."""
        discarded = self._rows(run_id).update(status=Status.SUPPRESSED, status_reason=reason[:200])
        deleted, _ = self._items(run_id).delete()
        return discarded + deleted


OUTBOX_HOLDS = OutboxHolds()
