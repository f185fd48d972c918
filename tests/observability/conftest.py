"""Observability fixtures: test jobs, alert endpoints on a real local HTTP server."""
from __future__ import annotations

import pytest

from scheduling import registry
from tests import factories as f
from tests.observability import jobs_for_tests


@pytest.fixture
def obs_jobs():
    for job in jobs_for_tests.JOBS:
        registry.register(job)
    jobs_for_tests.FAILING.update({"obs-flaky": True, "obs-warn": True})
    yield {j.slug: j for j in jobs_for_tests.JOBS}
    for job in jobs_for_tests.JOBS:
        registry.unregister(job.slug)


@pytest.fixture
def only_obs_jobs(obs_jobs, monkeypatch):
    """Hide the 13 real jobs so sync creates only the test jobs' schedules."""
    monkeypatch.setattr(registry, "all_jobs", lambda: sorted(obs_jobs.values(), key=lambda j: j.slug))
    return obs_jobs


@pytest.fixture
def lakeside(db):
    return f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York", it_contact_email="it@lakeside.example")


@pytest.fixture
def endpoints(httpserver, settings):
    """PagerDuty and Slack pointed at pytest-httpserver (a real HTTP server on localhost)."""
    settings.PAGERDUTY_ROUTING_KEY = "R0UT1NGKEY"
    settings.PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    settings.SLACK_WEBHOOK_URL = httpserver.url_for("/slack/hook")
    settings.ALERTS_BASE_URL = "https://skillcore.example"
    settings.ALERTS_SLACK_RUN_EVENTS = []
    return httpserver


def received(httpserver, path: str) -> list[dict]:
    """JSON bodies the server received on a path, in order."""
    return [req.get_json() for req, _ in httpserver.log if req.path == path]
