"""A test qcluster's scheduler pass every few seconds instead of django-q2's ~30 s.

django-q2's sentinel calls the scheduler from its guard loop once its counter reaches 30
(seconds of guard cycles; a constant of django-q2, not a setting), so a test that waits for
a real cluster's first pass, or for a retry fired through a one-off Schedule row, waits up
to 30 s each time. A test that only needs passes to happen (not their 30 s rhythm) starts
its cluster with ``SKILLCORE_TEST_SCHEDULER_TICK=<seconds>`` (tests/support/qcluster.py,
``cluster_env``); skillcore/settings_test.py then installs this app, which gives the
sentinel a thread that runs the same scheduler pass (scheduling.scheduler.scheduler_pass,
through ``django_q.cluster.scheduler``) at once and then at that tick, and turns the guard loop's own call
off, so passes never overlap within one cluster. Everything else is the real cluster:
its guard, workers, monitor, broker and the pass itself. Test settings only.
"""
from __future__ import annotations

import functools
import logging
import os
import threading

from django.apps import AppConfig

ENV = "SKILLCORE_TEST_SCHEDULER_TICK"


def _guard_with_tick(guard, tick: float):
    @functools.wraps(guard)  # scheduling/checks.py reads the guard it wraps
    def guard_with_tick(self):
        from django_q import cluster
        from django_q.conf import Conf

        Conf.SCHEDULER = False  # this sentinel's guard loop no longer calls the scheduler

        def passes():
            while True:
                try:
                    cluster.scheduler(broker=self.broker)
                except Exception:  # as a pass's failure in the guard loop: logged, the next one runs
                    logging.getLogger(__name__).exception("scheduler pass failed")
                if self.stop_event.wait(tick):
                    return

        threading.Thread(target=passes, name="test-scheduler-tick", daemon=True).start()
        guard(self)

    guard_with_tick.tick = tick
    return guard_with_tick


class SchedulerTickConfig(AppConfig):
    name = "tests.support.scheduler_tick"
    label = "test_scheduler_tick"

    def ready(self):
        from django_q import cluster

        if not hasattr(cluster.Sentinel.guard, "tick"):
            cluster.Sentinel.guard = _guard_with_tick(cluster.Sentinel.guard, float(os.environ[ENV]))
