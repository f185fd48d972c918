"""How the engine drives django-q2's own scheduler loop (``django_q.scheduler.scheduler``).

django-q2 1.11.1 computes a CRON row's next_run with croniter, in one global zone, from
"now" (docs/decisions/django-q2.md). We keep django-q2's loop (its row locking, task creation, intended
date and cluster routing) and replace only that computation, for rows we own:

1. ``Schedule.calculate_next_run`` is wrapped (``install()``, called from AppConfig.ready).
   For CRON rows whose name starts with "skillcore:" it returns the first slot of the
   row's cron, in the zone stored in the row's kwargs, strictly after max(the slot just
   fired, now), computed by cronsim with Debian's DST rules. Every other row keeps
   django-q2's behaviour. Why a wrapper rather than our own schedule type: the scheduler
   loop, the admin and ``Schedule.save()`` all call this one method, so one override
   keeps them consistent; a ONCE row re-armed by the task would stop firing whenever a
   worker is down, and the lost slots would never be recorded as missed.
   Why "after max(slot, now)": catch-up is the engine's (services.claim_slot records
   missed slots and runs the latest one within the job's window), so the loop must not
   replay slots one per pass.
2. The sentinel's reference to ``scheduler`` (``django_q.cluster.scheduler``) is replaced
   by ``scheduler_pass``: a heartbeat row, the lost-run reaper and the stranded-run sweeper
   (queued runs the task queue refused), then the real pass. django-q2 has no scheduler
   signal; this is the pre-pass hook. The pass itself is ``fire``: the engine's due rows
   fired in chunks (scheduling/firing.py: one transaction per chunk, SKIP LOCKED, so
   several qclusters share a burst), then django-q2's own loop for every other row.
   When django-q2 fires and deletes a retry's one-off Schedule, a post_delete receiver
   records the task id on the run (the sweeper's "has a delivery" mark).
3. The computation never raises into the pass: django-q2 runs every due row in one
   transaction (the batch firing, one chunk), so one bad row would stall all schedules
   (docs/decisions/django-q2.md). A row whose cron or zone cannot be evaluated is pushed
   an hour ahead and logged.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from scheduling import cron

logger = logging.getLogger(__name__)
PREFIX = "skillcore:"


def engine_next_run(schedule, after: dt.datetime | None) -> dt.datetime:
    now = timezone.now()
    base = after or schedule.next_run or now
    if schedule.pk is None:
        base = now
    try:
        from scheduling.services import q_row_zone

        # The zone as the row carries it (services.q_row_zone): no query per due row.
        return cron.next_slot(schedule.cron, q_row_zone(schedule), max(base, now))
    except Exception:
        logger.exception("schedule %s: cannot compute the next run of %r; retrying in an hour", schedule.name, schedule.cron)
        return now + dt.timedelta(hours=1)


def install() -> None:
    """Wrap Schedule.calculate_next_run and the sentinel's scheduler (idempotent)."""
    from django_q.models import Schedule

    original = Schedule.calculate_next_run
    if not getattr(original, "_skillcore", False):
        def calculate_next_run(self, next_run=None):
            if self.schedule_type == Schedule.CRON and (self.name or "").startswith(PREFIX):
                return engine_next_run(self, next_run)
            return original(self, next_run)

        calculate_next_run._skillcore = True
        calculate_next_run.__wrapped__ = original
        Schedule.calculate_next_run = calculate_next_run

    import django_q.cluster

    if getattr(django_q.cluster.scheduler, "__name__", "") != "scheduler_pass":
        django_q.cluster.scheduler = scheduler_pass

    from django.db.models.signals import post_delete

    post_delete.connect(_schedule_deleted, sender=Schedule, dispatch_uid="scheduling.retry_task")


def _schedule_deleted(sender, instance, **kwargs):
    from scheduling import services

    services.record_retry_task(schedule=instance)


def fire(broker=None):
    """Fire what is due: the engine's slots in chunks (scheduling/firing.py), then
    django-q2's own pass for every other row (retries' one-off rows, rows of other apps)
    and for any engine row that fell due in between (the same next-run computation)."""
    from django_q.brokers import get_broker
    from django_q.scheduler import scheduler

    from scheduling import firing

    broker = broker or get_broker()
    try:
        firing.fire_due(broker=broker)
    except Exception:  # e.g. Redis refused the push: the chunk rolled back, its rows stay due
        logger.exception("batch firing failed; django-q2's pass fires what it can")
    return scheduler(broker)


def scheduler_pass(broker=None):
    """What each qcluster sentinel runs every ~30 s: heartbeat, reaper, sweeper, then ``fire``."""
    from scheduling import runner, services

    try:
        now = timezone.now()
        services.record_heartbeat(name=runner.worker_label(), now=now)
        services.reap_lost_runs(now=now)
    except Exception:  # bookkeeping must never stop schedules from firing
        logger.exception("scheduler pre-pass failed")
    try:
        # Before django-q2's pass: a retry whose one-off Schedule is due is still waiting
        # for it here, so the sweeper leaves it to that Schedule.
        services.enqueue_stranded_runs(now=timezone.now())
    except Exception:
        logger.exception("stranded-run sweep failed")
    result = fire(broker)
    try:
        # After django-q2's pass, so the slots it just fired are not seen as overdue: long
        # runs, a stalled scheduler, and alert deliveries waiting for a retry.
        from scheduling.monitoring import alerting

        alerting.watch()
    except Exception:
        logger.exception("alert watch failed")
    return result
