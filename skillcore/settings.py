"""SkillCore settings, all read from the environment (see docs/configuration.md).

Storage time zone is UTC; each district carries its own IANA zone and every job computes
its slots in that zone.
"""
from __future__ import annotations

import re
from pathlib import Path

from skillcore import env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEBUG = env.get_bool("DEBUG", False)
_secret = env.get_str("SECRET_KEY")
if not _secret:
    if not DEBUG:
        env.fail("SECRET_KEY", "must be set when DEBUG is off")
    _secret = "demo-only-insecure-key-never-use-in-production"
SECRET_KEY = _secret
ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS", [])
# DEBUG pages and error e-mails: no secret setting, URL password or webhook path shown.
DEFAULT_EXCEPTION_REPORTER_FILTER = "skillcore.error_reports.SecretsHiddenFilter"
DEFAULT_EXCEPTION_REPORTER = "skillcore.error_reports.SecretsScrubbedReporter"

INSTALLED_APPS = [
    "skillcore.sites.SkillCoreAdminConfig",  # django.contrib.admin with a staff-only, audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "django_q",
    "anymail",
    "axes",  # the admin login lockout (skillcore/login_lockout.py)
    "skillcore",
    "students",
    "interventions",
    "iep",
    "notifications",
    "scheduling",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Durable per-endpoint, per-hour request counts for the monthly system-health summary.
    "scheduling.monitoring.request_metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as axes asks: it turns a refused login into the lockout page on the way out.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "skillcore.urls"
WSGI_APPLICATION = "skillcore.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db = env.get_db("DATABASE_URL", f"sqlite:///{VAR_DIR / 'skillcore.sqlite3'}")
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's own psycopg 3 pool: workers and web reuse connections instead of
    # opening one per request or per job batch.
    _db.setdefault("OPTIONS", {})
    if env.get_bool("DATABASE_POOL", True):
        _db["OPTIONS"]["pool"] = {
            "min_size": env.get_int("DATABASE_POOL_MIN", 1, minimum=0),
            "max_size": env.get_int("DATABASE_POOL_MAX", 10, minimum=1),
            "timeout": 10,
        }
        # The pool checks a connection as it hands it out (one empty round trip): after a
        # PostgreSQL restart every idle pooled connection is dead, and without the check each
        # would fail one request or one job before the pool replaced it. A forked process
        # never uses its parent's pool (skillcore/forked_db.py).
        _db["CONN_HEALTH_CHECKS"] = True
    _db["CONN_MAX_AGE"] = 0
else:
    _db.setdefault("OPTIONS", {})
    # WAL and a busy timeout let the demo's web server and qcluster share the file.
    _db["OPTIONS"].setdefault("timeout", 20)
    _db["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    _db["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
_db["TEST"] = {"NAME": env.get_str("TEST_DATABASE_NAME")} if env.get_str("TEST_DATABASE_NAME") else {}
DATABASES = {"default": _db}
IS_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"
# SQLite builds the covering indexes (attendance_date_id_idx INCLUDE student_id) without their
# non-key columns, and says so (models.W040): they only speed up PostgreSQL's admin pages.
SILENCED_SYSTEM_CHECKS = [] if IS_POSTGRES else ["models.W040"]
# django-prometheus's instrumented subclasses of the same backends: query, error and
# connection counters on /metrics. connection.vendor and behaviour are unchanged.
METRICS_INSTRUMENT_DB = env.get_bool("METRICS_INSTRUMENT_DB", True)
if METRICS_INSTRUMENT_DB:
    _db["ENGINE"] = _db["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.get_redis_url("REDIS_URL")
if REDIS_URL:
    # Django's own Redis cache: django-prometheus's Redis backends import django-redis,
    # which is not a dependency (with it, nothing started once REDIS_URL was set).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}

# The event bus (skillcore/events.py): Redis Streams named <prefix><event type> when
# REDIS_URL is set, else a table; the stream-cleanup job trims entries past the retention.
EVENT_STREAM_PREFIX = env.get_str("EVENT_STREAM_PREFIX", "skillcore:events:")
EVENT_STREAM_RETENTION_DAYS = env.get_int("EVENT_STREAM_RETENTION_DAYS", 30, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
LANGUAGES = [("en", "English"), ("es", "Spanish")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env.get_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# The data-archival job's object storage, through Django's storage API: the local file
# system under MEDIA_ROOT/archive, or any S3-compatible bucket (django-storages) when
# ARCHIVE_S3_BUCKET is set. Credentials: ARCHIVE_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY, or
# boto3's default chain (instance role) when empty.
ARCHIVE_S3_BUCKET = env.get_str("ARCHIVE_S3_BUCKET", "")
REQUEST_METRICS_FLUSH_SECONDS = env.get_int("REQUEST_METRICS_FLUSH_SECONDS", 60, minimum=0)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT / "archive"), "allow_overwrite": True},
    },
}
if ARCHIVE_S3_BUCKET:
    STORAGES["archive"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ARCHIVE_S3_BUCKET,
            "endpoint_url": env.get_str("ARCHIVE_S3_ENDPOINT_URL", "") or None,
            "region_name": env.get_str("ARCHIVE_S3_REGION", "") or None,
            "access_key": env.get_str("ARCHIVE_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env.get_str("ARCHIVE_S3_SECRET_ACCESS_KEY", "") or None,
            "location": env.get_str("ARCHIVE_S3_PREFIX", "archive"),
            "file_overwrite": True,  # a rerun rewrites the same batch object
            "default_acl": None,
            # A private CA's bundle for an https endpoint (MinIO, Ceph); empty: the system's CAs.
            "verify": env.get_str("ARCHIVE_S3_CA_BUNDLE", "") or None,
        },
    }
    # Server-side encryption, asked for on every upload, on top of the application's own
    # (ARCHIVE_ENCRYPTION_KEY): "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with
    # ARCHIVE_S3_KMS_KEY_ID or the account's default key). Empty: the bucket's default.
    _sse = env.get_str("ARCHIVE_S3_SERVER_SIDE_ENCRYPTION", "")
    if _sse not in {"", "AES256", "aws:kms"}:
        env.fail("ARCHIVE_S3_SERVER_SIDE_ENCRYPTION", f"must be AES256, aws:kms or empty, got {_sse!r}")
    _kms_key = env.get_str("ARCHIVE_S3_KMS_KEY_ID", "")
    if _kms_key and _sse != "aws:kms":
        env.fail("ARCHIVE_S3_KMS_KEY_ID", "needs ARCHIVE_S3_SERVER_SIDE_ENCRYPTION=aws:kms")
    if _sse:
        STORAGES["archive"]["OPTIONS"]["object_parameters"] = {
            "ServerSideEncryption": _sse, **({"SSEKMSKeyId": _kms_key} if _kms_key else {})}

# Every archive object is sealed with AES-256-GCM (skillcore/archives.py) before it is
# written: ARCHIVE_ENCRYPTION_KEY seals, it and ARCHIVE_ENCRYPTION_RETIRED_KEYS open (a
# rotation moves the old key to the retired list). Production refuses to start without a
# key; the demo (DEBUG) generates one into var/ on first use, kept across restarts.
ARCHIVE_ENCRYPTION_KEY = env.get_archive_key("ARCHIVE_ENCRYPTION_KEY")
ARCHIVE_ENCRYPTION_RETIRED_KEYS = env.get_archive_keys("ARCHIVE_ENCRYPTION_RETIRED_KEYS")
if not ARCHIVE_ENCRYPTION_KEY:
    if not DEBUG:
        env.fail("ARCHIVE_ENCRYPTION_KEY", "must be set when DEBUG is off (archives are encrypted with it; "
                 "`python -m skillcore.archives` prints a new key)")
    from skillcore.archives import demo_key

    ARCHIVE_ENCRYPTION_KEY = demo_key(VAR_DIR / "demo-archive.key")

# --- email: any ESP through django-anymail; the console backend for the demo -----------
# With DEBUG (the demo) emails are files in EMAIL_FILE_PATH: the qcluster drains the outbox
# every minute, and the console backend would print the demo's thousand emails into the terminal.
EMAIL_BACKEND = env.get_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.filebased.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env.get_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env.get_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.get_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.get_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", False)
# Implicit TLS from the first byte (port 465); EMAIL_USE_TLS is STARTTLS (587). One or the other.
EMAIL_USE_SSL = env.get_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    env.fail("EMAIL_USE_SSL", "and EMAIL_USE_TLS are exclusive: SSL for port 465, TLS (STARTTLS) for 587")
EMAIL_TIMEOUT = env.get_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env.get_str("DEFAULT_FROM_EMAIL", "SkillCore <no-reply@skillcore.invalid>")
ANYMAIL = {
    "SENDGRID_API_KEY": env.get_str("SENDGRID_API_KEY", ""),
}

# --- push: Firebase Cloud Messaging ----------------------------------------------------
FCM_CREDENTIALS_FILE = env.get_str("FCM_CREDENTIALS_FILE", "")
FCM_PROJECT_ID = env.get_str("FCM_PROJECT_ID", "")
FCM_DRY_RUN = env.get_bool("FCM_DRY_RUN", DEBUG)
# Replaces the FCM messages:send URL ({project_id} is filled in): an emulator, a proxy, tests.
FCM_ENDPOINT = env.get_str("FCM_ENDPOINT", "")

# --- SMS: Twilio's REST API (notifications/sms.py) --------------------------------------
# No account SID: SMS rows wait and retry ("Twilio not configured"), as push does without
# credentials. The auth token also verifies the inbound webhook's signatures.
TWILIO_ACCOUNT_SID = env.get_str("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = env.get_str("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = env.get_str("TWILIO_FROM_NUMBER", "")
if TWILIO_FROM_NUMBER and not re.fullmatch(r"\+[1-9]\d{7,14}", TWILIO_FROM_NUMBER):
    env.fail("TWILIO_FROM_NUMBER", "must be an E.164 number such as +12025550143")
# Replaces https://api.twilio.com (a Twilio-compatible server: the demo's, the tests').
TWILIO_API_BASE_URL = env.get_str("TWILIO_API_BASE_URL", "")
TWILIO_TIMEOUT = env.get_int("TWILIO_TIMEOUT", 15, minimum=1)

# --- FERPA access trail ---------------------------------------------------------------
# At least the most days 7 calendar years can span (two leap days), the trigger's own line
# (skillcore.services.STATUTORY_MINIMUM_DAYS): a shorter value would only make the purge refuse.
ACCESS_LOG_RETENTION_DAYS = env.get_int("ACCESS_LOG_RETENTION_DAYS", 7 * 365 + 2, minimum=7 * 365 + 2)

# --- django-q2 -------------------------------------------------------------------------
# The ORM broker on the main database by default; Redis when REDIS_URL is set.
Q_CLUSTER = {
    "name": "skillcore",
    "workers": env.get_int("Q_WORKERS", 2, minimum=1),
    "timeout": env.get_int("Q_TIMEOUT", 3600, minimum=10),
    "retry": env.get_int("Q_RETRY", 3700, minimum=20),
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    "time_zone": "UTC",
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- scheduling engine (scheduling/) ------------------------------------------------------
# Global jobs' cron zone; a schedule overdue by more than the grace (the scheduler ticks
# every ~30 s) means no scheduler is running; a run still "running" LOST_GRACE seconds
# past its job's timeout lost its worker and is retried from its checkpoint.
SCHEDULING_GLOBAL_TIME_ZONE = env.get_zone("SCHEDULING_GLOBAL_TIME_ZONE", "UTC")
SCHEDULING_OVERDUE_GRACE = env.get_int("SCHEDULING_OVERDUE_GRACE", 300, minimum=60)
SCHEDULING_LOST_GRACE = env.get_int("SCHEDULING_LOST_GRACE", 60, minimum=1)
SCHEDULING_EXTRA_JOB_MODULES = env.get_list("SCHEDULING_EXTRA_JOB_MODULES", [])
# Periodic system tasks: project plumbing, not jobs (no district, no slot, no run record).
# `manage.py jobs sync` keeps one django-q2 Schedule row per entry, named "periodic:<key>",
# every `minutes` minutes (scheduling/periodic_tasks.py); the qcluster's scheduler fires them.
# The outbox drain every minute: a queued message waits a minute at most, plus the
# scheduler's ~30 s tick. Digest assembly only ever assembles closed periods (a district's
# local day; the week from Monday), so running it hourly is safe for both frequencies and a
# digest is assembled within the hour after each district's local midnight, whatever its zone.
SCHEDULING_PERIODIC_TASKS = {
    "notifications-drain-outbox": {"func": "notifications.tasks.drain_outbox", "minutes": 1},
    "notifications-assemble-daily-digests": {
        "func": "notifications.tasks.assemble_digests", "kwargs": {"frequency": "daily"}, "minutes": 60,
    },
    "notifications-assemble-weekly-digests": {
        "func": "notifications.tasks.assemble_digests", "kwargs": {"frequency": "weekly"}, "minutes": 60,
    },
}

# --- observability and alerting (scheduling/monitoring/)
# /metrics: a bearer token and/or client networks (CIDR). Neither set: denied, except from
# localhost when DEBUG (the demo).
METRICS_TOKEN = env.get_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env.get_networks("METRICS_ALLOWED_NETWORKS", [])
# PagerDuty Events API v2 for critical alerts, a Slack incoming webhook for warnings; an
# empty value turns the channel off (alerts are still recorded and logged).
PAGERDUTY_ROUTING_KEY = env.get_str("PAGERDUTY_ROUTING_KEY", "")
PAGERDUTY_EVENTS_URL = env.get_str("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue")
SLACK_WEBHOOK_URL = env.get_str("SLACK_WEBHOOK_URL", "")
# A run still going after expected duration x this factor gets a long-running warning.
ALERTS_LONG_RUNNING_FACTOR = env.get_float("ALERTS_LONG_RUNNING_FACTOR", 3.0, minimum=1.0)
# Job slugs ("*": all) whose every start and completion is posted to Slack.
ALERTS_SLACK_RUN_EVENTS = env.get_list("ALERTS_SLACK_RUN_EVENTS", [])
ALERTS_HTTP_TIMEOUT = env.get_int("ALERTS_HTTP_TIMEOUT", 10, minimum=1)
ALERTS_MAX_ATTEMPTS = env.get_int("ALERTS_MAX_ATTEMPTS", 10, minimum=1)
# Links in alerts point at this site (e.g. https://skillcore.district.example); empty: no links.
ALERTS_BASE_URL = env.get_str("ALERTS_BASE_URL", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.get_str("LOG_LEVEL", "INFO")},
    # twilio's HTTP client logs every request's URL and headers at INFO: a dozen lines per text.
    "loggers": {"django.db.backends": {"level": "INFO"}, "twilio.http_client": {"level": "WARNING"}},
}

# --- admin login lockout (django-axes; skillcore/login_lockout.py says what it adds) ----------
# After LOGIN_THROTTLE_FAILURES failed logins for one username from one address (or 4x that
# from one address over any usernames) further attempts are refused for LOGIN_THROTTLE_MINUTES
# after the last failure. Counters live in the default cache: Redis when REDIS_URL is set,
# which every web worker shares (the per-process memory cache would let each worker be
# guessed at separately). Each failure is also a row of axes' AccessFailureLog (admin).
LOGIN_THROTTLE_FAILURES = env.get_int("LOGIN_THROTTLE_FAILURES", 5, minimum=1)
LOGIN_THROTTLE_MINUTES = env.get_int("LOGIN_THROTTLE_MINUTES", 15, minimum=1)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked client before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "skillcore.login_lockout.LockoutHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # the address-wide limit is the handler's
# Spelled out: axes' default is a lazy object, which the error pages' setting scrubber
# (skillcore/error_reports.py) takes for a string and cannot search.
AXES_USERNAME_FORM_FIELD = "username"
# Callables read LOGIN_THROTTLE_* at each use, so those stay the only knobs.
AXES_FAILURE_LIMIT = "skillcore.login_lockout.failure_limit"
AXES_COOLOFF_TIME = "skillcore.login_lockout.cool_off"
AXES_CLIENT_IP_CALLABLE = "skillcore.login_lockout.client_address"  # REMOTE_ADDR only
AXES_LOCKOUT_CALLABLE = "skillcore.login_lockout.lockout_response"  # the login page, 429
AXES_RESET_ON_SUCCESS = True  # a successful login clears its (username, address) counter
# A refused attempt neither counts nor extends the lock: it ends by itself.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # the attempt log (skillcore/admin.py shows it read-only)
AXES_ENABLE_ADMIN = False  # axes' own admins allow deletes and show tables this handler never fills
AXES_VERBOSE = False  # no start-up banner on every manage.py command; failures are still logged

if not DEBUG:
    # Production is https only (`manage.py check --deploy` is clean with these defaults;
    # tests/security/test_deploy_check.py). Behind a TLS-terminating proxy set
    # SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO so Django sees the request was https.
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env.get_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env.get_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env.get_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and monitors probe /health over plain http inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health"]
    _proxy_header = env.get_str("SECURE_PROXY_SSL_HEADER", "")
    if _proxy_header:
        SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")
    SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.get_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env.get_bool("SECURE_HSTS_PRELOAD", True)

# --- encryption in transit (skillcore/transport.py) ------------------------------------------
# Production refuses to start when a connection would carry student data in clear text over
# a network (this host's loopback and unix sockets are exempt). ALLOW_PLAINTEXT_TRANSPORT
# names the services (database, redis, email, s3, http) accepted anyway, e.g. inside a
# network encrypted below the application (WireGuard, IPsec); docs/deployment.md.
ALLOW_PLAINTEXT_TRANSPORT = env.get_choices("ALLOW_PLAINTEXT_TRANSPORT", ("database", "redis", "email", "s3", "http"))
if not DEBUG:
    from skillcore.transport import plaintext_connections

    for _plain in plaintext_connections(
        database=DATABASES["default"], redis_url=REDIS_URL, email_backend=EMAIL_BACKEND, email_host=EMAIL_HOST,
        email_use_tls=EMAIL_USE_TLS, email_use_ssl=EMAIL_USE_SSL, s3_bucket=ARCHIVE_S3_BUCKET,
        s3_endpoint=STORAGES["archive"]["OPTIONS"].get("endpoint_url") or "",
        http_urls={"FCM_ENDPOINT": FCM_ENDPOINT, "PAGERDUTY_EVENTS_URL": PAGERDUTY_EVENTS_URL,
                   "SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL, "TWILIO_API_BASE_URL": TWILIO_API_BASE_URL},
    ):
        if _plain.service not in ALLOW_PLAINTEXT_TRANSPORT:
            env.fail(_plain.variable, f"{_plain.problem} (or add {_plain.service} to ALLOW_PLAINTEXT_TRANSPORT)")
