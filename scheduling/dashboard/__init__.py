"""/admin/scheduled-jobs/: the scheduled-jobs dashboard, a plain Django app inside the admin's
look. System admins only; other staff get a 403 page, anonymous users the login page.

- ``views``: thin function views behind ``system_admin_required``; reads come from
  scheduling.selectors / scheduling.monitoring.status (a fixed number of queries whatever the
  number of schedules), every change goes through scheduling.services, which writes the
  ScheduleChange audit row. Bad input gives a form error or a message, never a 500.
- ``forms``: the pause note and the cron edit. ``pages``: what the index and the schedule page
  list. ``preview``: the cron preview around the next DST change. ``charts``: the run-duration
  chart. ``urls``: the URL patterns, which skillcore/urls.py mounts in the admin's namespace.
- Times and durations are shown with the template filters of
  scheduling/templatetags/times_and_durations.py.
"""
