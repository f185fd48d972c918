"""Monitoring: what tells people the engine and its jobs are healthy.

- ``alerts``: the hooks the engine calls (a run started, finished, failed; slots not run);
- ``alerting``: incidents (one per problem) and their deliveries to Slack and PagerDuty,
  through the outbox protocol (skillcore.outbox);
- ``counters``: counters kept at write time for /metrics;
- ``metrics``: the Prometheus collector; ``request_metrics``: per-endpoint request counts;
- ``status``: the scheduler's and the jobs' health as one summary; ``health``: /health,
  /health/db and /metrics views.
"""
