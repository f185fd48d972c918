"""The scheduling app's models, one module per part: the engine's runs and schedules, what
jobs record for people, and what monitoring keeps. Django finds them all here."""
from scheduling.models.holds import BlastRadiusLimit, RunHold
from scheduling.models.monitoring import (
    DURATION_BUCKETS,
    AlertDelivery,
    AlertDeliveryCounter,
    CalendarSkipCounter,
    Incident,
    JobRunCounter,
    RequestMetric,
    bucket_field,
)
from scheduling.models.outputs import EmergencyBroadcast, Report, RolloverRequest, Scenario, UserLifecycleChange
from scheduling.models.runs import JobRun, JobSchedule, ScheduleChange, SchedulerHeartbeat, schedule_name

__all__ = [
    "DURATION_BUCKETS", "AlertDelivery", "AlertDeliveryCounter", "CalendarSkipCounter", "EmergencyBroadcast", "Incident", "JobRun",
    "JobRunCounter", "JobSchedule", "Report", "RequestMetric", "RolloverRequest", "Scenario", "ScheduleChange",
    "SchedulerHeartbeat", "UserLifecycleChange", "bucket_field", "schedule_name",
    "BlastRadiusLimit", "RunHold",
]
