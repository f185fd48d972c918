"""The test suite's settings: production's, with the defaults a test run needs."""
import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DATABASE_POOL", "false")  # pytest-django's test DB teardown and a pool disagree
# Production redirects http to https; the test client and the localhost servers speak http.
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# Archives are encrypted in production; the suite's key is public and only ever seals test data.
os.environ.setdefault("ARCHIVE_ENCRYPTION_KEY", "CaQZq09I-CL_fOaXK8TfVoiR6yGcJq3QGS4tA_f3JAs=")

from skillcore.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# A real qcluster a test starts (tests/support/qcluster.py) is another process: it can only
# deliver to the test's SMTP server, so such a test names the SMTP backend here.
EMAIL_BACKEND = os.environ.get("TEST_QCLUSTER_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
# Request metrics flush only when a test asks (a flush inside another test's query-count
# assertion would add statements to it).
REQUEST_METRICS_FLUSH_SECONDS = 10**9

# A real qcluster a test starts (tests/support/qcluster.py) runs on the test's clock: the
# test process passes how far its clock (time-machine's) is from the real one, and the
# cluster's processes (forked from this one, so they inherit it) keep that distance, ticking.
# Without it a cluster would fire the slots of the hour the suite happens to run in.
if os.environ.get("SKILLCORE_TEST_CLOCK_OFFSET"):
    import time as _time

    import time_machine as _time_machine

    _time_machine.travel(_time.time() + float(os.environ["SKILLCORE_TEST_CLOCK_OFFSET"]), tick=True).start()

# A real qcluster a test starts with SKILLCORE_TEST_SCHEDULER_TICK runs its scheduler pass at
# that tick rather than every ~30 s (tests/support/scheduler_tick.py): for tests that wait
# for passes to happen, not for their rhythm.
if os.environ.get("SKILLCORE_TEST_SCHEDULER_TICK"):
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.scheduler_tick.SchedulerTickConfig"]  # noqa: F405
