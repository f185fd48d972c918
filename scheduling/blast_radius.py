"""The blast-radius guard: a run whose outbound messages are far above its usual volume
(a bad attendance import that marks every student absent, a grade sync that posts a year
at once) holds them for a system admin instead of sending them.

How a run's messages flow
-------------------------
1. While the job runs, the messages it enqueues are written held (the engine turns
   ``skillcore.held_messages.staging`` on around the job's entry point; emergencies are
   never held). Nothing the run writes can be sent before the run is judged.
2. At the run's end, in the transaction that records its outcome, ``judge``:
   a. a retry takes over the held messages of its slot's earlier attempts (their holds
      become "superseded"): the retry answers for them;
   b. counts the run's held messages per audience (families, staff) and stores the counts
      on the run (``JobRun.outbound``), the baseline of later runs;
   c. compares them with the baseline and the limits (``verdict``); within them the
      messages go to the normal outbox at once (quiet hours applied); over them, or when
      the run is a retry of a run that was held and not yet decided, they stay held, the
      run ends ``held`` and a ``RunHold`` records what and why, with an alert.
3. A system admin releases (``hold_release``: exactly the held messages go to the normal
   outbox, quiet hours respected; the run ends ``released``) or discards (``hold_discard``:
   none is sent; the run ends ``discarded``), with a required note; both are audited.
4. A hold left undecided 24 hours escalates its alert (``escalate_undecided_holds`` in
   scheduling/monitoring/alerting.py, from the alert watch); it never sends by itself.

The rule
--------
Baseline: per job and district, the median per audience of the messages of the last 10
successful runs (succeeded or succeeded with warnings; released runs, and the approved
retry a release of proposals runs, are not a usual volume). Fewer than 3 such runs is no baseline yet. Over the limit: more than
``multiplier`` x the baseline AND more than ``floor`` messages for one audience, or more
than ``cap`` messages in all (the only rule without a baseline). Limits come from the
district's ``BlastRadiusLimit`` row for the job, else its row for every job, else the
defaults (5x, 200, 50,000).
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from scheduling import registry
from scheduling.models import BlastRadiusLimit, JobRun, JobSchedule, RunHold, ScheduleChange
from scheduling.models.holds import DEFAULT_CAP, DEFAULT_FLOOR, DEFAULT_MULTIPLIER
from scheduling.monitoring import alerts
from skillcore import held_messages
from skillcore.held_messages import AUDIENCES
from students.roles import staff_of

HISTORY = 10  # successful runs the baseline is the median of
MIN_HISTORY = 3  # fewer is no baseline: one or two runs are not a usual volume
SAMPLE_SIZE = 20
BASELINE_STATUSES = (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING)
# The checkpoint key of the retry a system admin's release of proposals starts: that run
# applies the proposals and its messages are released without a limit (scheduling/runner.py).
RELEASED_PROPOSALS = "blast_radius_released_hold"


class HoldError(ValueError):
    """A release or discard that cannot be done; the message is one line for the user."""


@dataclass(frozen=True)
class Limits:
    multiplier: int = DEFAULT_MULTIPLIER
    floor: int = DEFAULT_FLOOR
    cap: int = DEFAULT_CAP

    @classmethod
    def for_job(cls, *, job_slug: str, district_id: int | None) -> Limits:
        """The district's row for the job, else for every job, else the defaults (one query)."""
        if district_id is None:
            return cls()
        rows = {job: (m, f, c) for job, m, f, c in BlastRadiusLimit.objects.filter(
            district_id=district_id, job__in=[job_slug, ""]).values_list("job", "multiplier", "floor", "cap")}
        found = rows.get(job_slug) or rows.get("")
        return cls(*found) if found else cls()

    def as_dict(self) -> dict:
        return {"multiplier": self.multiplier, "floor": self.floor, "cap": self.cap}


def baseline(*, job_slug: str, district_id: int | None) -> dict | None:
    """{"families": median, "staff": median, "runs": n} over the last ``HISTORY`` successful
    runs with a count, or None with fewer than ``MIN_HISTORY`` (one query, on the
    (job, district, -started_at) index)."""
    counted = list(
        JobRun.objects.filter(job=job_slug, district_id=district_id, status__in=BASELINE_STATUSES, outbound__isnull=False)
        # The approved retry a release of proposals runs sends the held volume: no more a
        # usual volume than the released run itself (else a few releases teach the guard
        # that a bad import's size is normal).
        .exclude(checkpoint__has_key=RELEASED_PROPOSALS)
        .order_by("-started_at", "-id").values_list("outbound", flat=True)[:HISTORY]
    )
    if len(counted) < MIN_HISTORY:
        return None
    return {**{a: statistics.median(c.get(a, 0) for c in counted) for a in AUDIENCES}, "runs": len(counted)}


def verdict(counts: dict[str, int], base: dict | None, limits: Limits) -> str | None:
    """Why these counts are over the limit, or None when they are within it."""
    total = sum(counts.get(a, 0) for a in AUDIENCES)
    if total > limits.cap:
        return f"{total} messages, over the cap of {limits.cap}"
    if base is None:
        return None
    for audience in AUDIENCES:
        n, usual = counts.get(audience, 0), base[audience]
        if n > limits.multiplier * usual and n > limits.floor:
            return (f"{n} messages to {audience}, more than {limits.multiplier}x the baseline of {usual:g} "
                    f"and more than {limits.floor}")
    return None


@dataclass
class Judgement:
    counts: dict[str, int]
    held: bool = False
    reason: str = ""
    baseline: dict | None = None
    limits: Limits | None = None
    proposal: dict | None = None  # writes held as proposals (``propose_check``): what they would send
    # A retry holding again what earlier attempts held: since when, and whether that was
    # escalated already (the 24-hour clock runs from the first hold, not from each retry).
    held_since: dt.datetime | None = None
    escalated_at: dt.datetime | None = None


def _staged_counts(run_id: int) -> dict[str, int]:
    counts = {a: 0 for a in AUDIENCES}
    for store in held_messages.stores():
        for audience, n in store.counts(run_id=run_id).items():
            counts[audience] += n
    return counts


def _undecided_earlier(run: JobRun, *, lock: bool = False) -> tuple[list[int], list[int]]:
    """(earlier attempts of the run's slot, those with an undecided hold). ``lock``: lock
    those attempts' holds first, as a release or discard does (``_decide``: the hold, then
    its held rows): a retry judged while a system admin decides waits for the decision and
    sees it, where taking the held rows first made each wait for the other (a deadlock)."""
    if not (run.retry_of_id or run.trigger == JobRun.Trigger.RETRY):
        return [], []
    earlier = _earlier_attempts(run)
    holds = RunHold.objects.filter(run_id__in=earlier)
    if lock:
        holds = holds.select_for_update().order_by("pk")
        return earlier, [run_id for run_id, decision in holds.values_list("run_id", "decision") if not decision]
    return earlier, list(holds.filter(decision="").values_list("run_id", flat=True))


def _reason(run: JobRun, counts: dict, undecided: list[int]) -> tuple[str | None, dict | None, Limits]:
    limits = Limits.for_job(job_slug=run.job, district_id=run.district_id)
    base = baseline(job_slug=run.job, district_id=run.district_id)
    reason = verdict(counts, base, limits)
    if undecided:
        # Only a person releases held messages: a retry of a held run holds again.
        reason = (f"a retry of held run #{undecided[0]}, whose messages only a system admin may release"
                  + (f"; {reason}" if reason else ""))
    return reason, base, limits


def propose_check(*, run: JobRun) -> dict | None:
    """For a job whose other writes are irreversible in practice (attendance-interventions'
    interventions): called inside the transaction of those writes, after it enqueued their
    messages. Over the limit it returns the proposal (reason, counts, baseline, limits, the
    breakdown and samples of the messages, taken now): the job rolls its writes back and the
    run ends held with them as proposals; a release runs the slot again with them approved.
    None: within the limit (or this run is that approved retry)."""
    if run.checkpoint.get(RELEASED_PROPOSALS):
        return None
    counts = _staged_counts(run.pk)
    _, undecided = _undecided_earlier(run)
    if not any(counts.values()) and not undecided:
        return None
    reason, base, limits = _reason(run, counts, undecided)
    if not reason:
        return None
    breakdown, samples = _snapshot(run.pk)
    return {"reason": reason, "counts": counts, "baseline": base, "limits": limits,
            "breakdown": breakdown, "samples": samples}


def _snapshot(run_id: int) -> tuple[list, list]:
    breakdown, samples = [], []
    for store in held_messages.stores():
        breakdown += store.breakdown(run_id=run_id)
        samples += store.samples(run_id=run_id, limit=SAMPLE_SIZE - len(samples))
    return breakdown, samples


def _earlier_attempts(run: JobRun) -> list[int]:
    first = run.retry_of_id or run.pk
    return list(JobRun.objects.filter(Q(pk=first) | Q(retry_of_id=first)).exclude(pk=run.pk).values_list("pk", flat=True))


def judge(*, run: JobRun, now: dt.datetime, proposal: dict | None = None, staged: bool | None = None) -> Judgement:
    """Step 2 of the module docstring, for a run that just ended (inside the transaction
    that records its outcome). Releases the messages when within the limits; the caller
    records the hold (``hold_record``) when ``held``. ``proposal``: the run held its other
    writes as proposals (``propose_check``), so it is held whatever is staged.

    ``staged``: whether the run's staging was asked to hold a message (the runner's
    ``held_messages.staging(...).asked``; None: not known, counted). False, for a run that is
    not a retry, means it holds nothing: only its own staging writes held rows for a run (a
    store asks ``staging_run`` first) and only a retry adopts others', so its counts are
    zeros without the stores' queries (most runs of most jobs send nothing)."""
    stores = held_messages.stores()
    earlier, undecided = _undecided_earlier(run, lock=True)
    if earlier:
        # 2a. A retry answers for what its slot's earlier attempts left held (a worker that
        # died mid-run leaves its messages held with no hold; a held run, with one).
        for store in stores:
            store.adopt(run_id=run.pk, from_run_ids=earlier)
    counts = {a: 0 for a in AUDIENCES} if staged is False and not earlier else _staged_counts(run.pk)
    judgement = Judgement(counts=counts)
    if run.checkpoint.get(RELEASED_PROPOSALS):
        reason = None  # the slot run again with a system admin's approval
    elif proposal is not None:
        judgement.counts = {a: counts[a] + proposal["counts"].get(a, 0) for a in AUDIENCES}
        judgement.baseline, judgement.limits, judgement.proposal = proposal["baseline"], proposal["limits"], proposal
        reason = proposal["reason"]
    elif not any(counts.values()) and not undecided:
        return judgement
    else:
        reason, judgement.baseline, judgement.limits = _reason(run, counts, undecided)
    if reason:
        judgement.held, judgement.reason = True, reason
        if undecided:
            first = RunHold.objects.filter(run_id__in=undecided).aggregate(
                since=Min("held_at"), escalated=Min("escalated_at"))
            judgement.held_since, judgement.escalated_at = first["since"], first["escalated"]
            RunHold.objects.filter(run_id__in=undecided, decision="").update(
                decision=RunHold.Decision.SUPERSEDED, decided_at=now, actor_label="blast-radius guard",
                note=f"held again by retry run #{run.pk}, which took its held messages over",
            )
        return judgement
    for store in stores:
        store.release(run_id=run.pk, now=now)
    return judgement


def hold_record(*, run: JobRun, judgement: Judgement, now: dt.datetime) -> RunHold:
    """Record a held run (what it would send, by template and school, 20 recipients and
    what each would be told, the baseline and limits) and raise its alert."""
    breakdown, samples = _snapshot(run.pk)
    limits = judgement.limits.as_dict() if judgement.limits else {}
    if judgement.proposal is not None:
        breakdown, samples = judgement.proposal["breakdown"] + breakdown, judgement.proposal["samples"] + samples
        limits["proposals"] = True  # its other writes were not made: a release runs the slot again
    hold, _ = RunHold.objects.update_or_create(run=run, defaults=dict(
        held_at=judgement.held_since or now, escalated_at=judgement.escalated_at,
        counts=judgement.counts, baseline=judgement.baseline or {}, limits=limits,
        reason=judgement.reason[:300], breakdown=breakdown, samples=samples[:SAMPLE_SIZE],
    ))
    alerts.run_held(run, hold)
    return hold


# -- a system admin's decision ---------------------------------------------------------------
def _check(hold: RunHold, acting_user, note: str) -> str:
    note = (note or "").strip()
    if acting_user is not None and not staff_of(acting_user).is_system_admin:
        raise HoldError("only a system admin may release or discard held messages")
    if not note:
        raise HoldError("a note is required: say why the held messages are released or discarded")
    if hold.decision:
        raise HoldError(f"the hold of run #{hold.run_id} was already {hold.get_decision_display().lower()}")
    return note


def _decide(*, hold: RunHold, decision: str, acting_user, note: str, actor_label: str, now: dt.datetime | None,
            act) -> RunHold:
    now = now or timezone.now()
    with transaction.atomic():
        hold = RunHold.objects.select_for_update(of=("self",)).select_related("run", "run__district").get(pk=hold.pk)
        note = _check(hold, acting_user, note)
        run = hold.run
        affected = sum(act(store, run.pk, now) for store in held_messages.stores())
        if decision == RunHold.Decision.RELEASED and hold.limits.get("proposals"):
            # The run's other writes were held as proposals (never made): the slot runs again,
            # approved, and makes them with their messages (a retry: its checkpoint says so).
            _approved_retry(run, hold=hold, acting_user=acting_user, now=now)
            affected += hold.total
        label = (acting_user.get_username() if acting_user is not None else actor_label)[:150]
        RunHold.objects.filter(pk=hold.pk).update(
            decision=decision, decided_at=now, decided_by=acting_user, actor_label=label, note=note,
            messages_affected=affected,
        )
        status = JobRun.Status.RELEASED if decision == RunHold.Decision.RELEASED else JobRun.Status.DISCARDED
        JobRun.objects.filter(pk=run.pk, status=JobRun.Status.HELD).update(status=status)
        schedule = JobSchedule.objects.filter(job=run.job, district_id=run.district_id).first()
        if schedule is not None:
            action = ScheduleChange.Action.RELEASE if decision == RunHold.Decision.RELEASED else ScheduleChange.Action.DISCARD
            ScheduleChange.objects.create(
                schedule=schedule, action=action, acting_user=acting_user, actor_label=label, at=now,
                before={"run": run.pk, "status": JobRun.Status.HELD, "held": hold.counts},
                after={"run": run.pk, "status": status, "messages": affected, "note": note},
            )
        if not RunHold.objects.filter(run__job=run.job, run__district_id=run.district_id, decision="").exists():
            alerts.holds_decided(job_slug=run.job, district_id=run.district_id,
                                 resolution=f"run #{run.pk} {status} by {label}")
        hold.refresh_from_db()
        return hold


def _approved_retry(run: JobRun, *, hold: RunHold, acting_user, now: dt.datetime) -> JobRun:
    from scheduling import services

    job = registry.get(run.job)
    retry = services._create_retry(run, when=now, note=f"released hold of run #{run.pk}", acting_user=acting_user)
    retry.checkpoint = {**(retry.checkpoint or {}), RELEASED_PROPOSALS: hold.pk}
    JobRun.objects.filter(pk=retry.pk).update(checkpoint=retry.checkpoint)
    services._enqueue(retry, job)
    return retry


def hold_release(*, hold: RunHold, acting_user, note: str, actor_label: str = "command line",
                 now: dt.datetime | None = None) -> RunHold:
    """Send exactly the held messages, through the normal outbox (quiet hours respected:
    a family message outside its district's window waits for it). The run ends
    ``released``. Audited on the hold and the schedule's history; a note is required."""
    return _decide(hold=hold, decision=RunHold.Decision.RELEASED, acting_user=acting_user, note=note,
                   actor_label=actor_label, now=now, act=lambda store, run_id, at: store.release(run_id=run_id, now=at))


def hold_discard(*, hold: RunHold, acting_user, note: str, actor_label: str = "command line",
                 now: dt.datetime | None = None) -> RunHold:
    """Send none of the held messages (kept as suppressed, with the reason). The run ends
    ``discarded``. Audited like a release; a note is required."""
    return _decide(hold=hold, decision=RunHold.Decision.DISCARDED, acting_user=acting_user, note=note,
                   actor_label=actor_label, now=now,
                   act=lambda store, run_id, at: store.discard(run_id=run_id, now=at, reason=f"discarded: run #{run_id} held"))


def undecided_holds():
    """The holds the dashboard's card shows, oldest first."""
    return RunHold.objects.filter(decision="").select_related("run", "run__district").order_by("held_at", "id")


def job_title(slug: str) -> str:
    job = registry.find(slug)
    return job.title if job is not None else slug
