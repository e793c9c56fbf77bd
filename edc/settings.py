"""Settings for the EDC, read from the environment (docs/deployment.md lists every variable).

Nothing set  -> the embedded demo: SQLite under var/, Celery eager, DEBUG on localhost, console e-mail.
DATABASE_URL + REDIS_URL -> PostgreSQL, Redis broker and cache, real Celery workers.
DJANGO_ENV=production -> additionally requires DJANGO_SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and
REDIS_URL, refuses to start without them, and passes `manage.py check --deploy` with no warnings.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EDC_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    if not value:
        return default
    try:
        result = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if result != result or result < 0:  # NaN or negative
        raise ImproperlyConfigured(f"{name}={value!r} must be a number of seconds, 0 or more")
    return result


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = env_str(name)
    if not value:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


DJANGO_ENV = env_str("DJANGO_ENV", "development").lower()
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use 'development' or 'production'")
IS_PRODUCTION = DJANGO_ENV == "production"

# --- Core ---------------------------------------------------------------------------------

if IS_PRODUCTION:
    _missing = [
        name for name in ("DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL") if not env_str(name)
    ]
    if _missing:
        raise ImproperlyConfigured(
            "DJANGO_ENV=production refuses to start without " + ", ".join(_missing) + " (see docs/deployment.md)"
        )
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure") or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is too weak: use at least 50 random characters")
    if env_bool("DJANGO_DEBUG", False):
        raise ImproperlyConfigured("DJANGO_DEBUG cannot be on in production")
    DEBUG = False
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY") or "django-insecure-demo-only-never-use-this-key-in-production-000"
    DEBUG = env_bool("DJANGO_DEBUG", True)
    # DEBUG pages are only ever served to this machine.
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
    INTERNAL_IPS = ["127.0.0.1", "::1"]

EDC_VERSION = "0.1.0"

INSTALLED_APPS = [
    "edc.apps.EdcAdminConfig",  # django.contrib.admin, checking posted ids (edc.ids)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "simple_history",
    "django_celery_beat",
    "axes",
    "edc.ops",
    "trials.protocol",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "trials.accounts",
    "trials.records",
    "trials.participants",
    "trials.visits",
    "trials.safety",
    "trials.epro",
    "trials.monitoring",
    "trials.build",
    "trials.exports",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "trials.api",
    "trials.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "edc.request_memo.RequestMemoMiddleware",  # issue 22: the user's roles read once per request
    "edc.cookies.MalformedSessionCookieMiddleware",  # a forged session cookie is no session, not a 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "trials.accounts.middleware.SessionRulesMiddleware",
    # While a participant holds the tablet, only her questionnaires answer (trials.epro).
    "trials.epro.middleware.ParticipantModeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: answers a locked-out login with the lockout page.
    "axes.middleware.AxesMiddleware",
]

if IS_PRODUCTION:
    # gunicorn serves the collected static files itself (no CDN: CSP allows only 'self');
    # in development runserver serves them from static/.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "edc.urls"
WSGI_APPLICATION = "edc.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "edc.context_processors.edc",
            ],
            # The date-time filters every template uses (edc.timefmt): `edc` is not an app of its own.
            "libraries": {"edc_time": "edc.templatetags.edc_time"},
        },
    },
]

# --- Database -----------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # .ci/run names the test database so the Celery worker it starts writes where the tests read.
    DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME") or None}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "edc.sqlite3",
            "OPTIONS": {
                # WAL + IMMEDIATE transactions: the demo's web process and eager tasks never
                # fail with "database is locked" when two requests write at once.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not shared-cache memory: the browser tests' live server writes from several
            # threads, and only a file database waits on a lock instead of failing at once.
            # One file per test run, so two runs on one machine never share it.
            "TEST": {"NAME": VAR_DIR / f"test-edc-{os.getpid()}.sqlite3"},
        }
    }
# A streaming replica (issue 22, docs/deployment.md "Several machines"): reads that tolerate a few
# seconds of lag (exports, safety summaries, reports: edc.db_router.replica_reads) go there while
# its lag is within REPLICA_MAX_LAG_SECONDS; every write, and every other read, goes to the primary.
# In the tests the alias mirrors the default database (Django's TEST MIRROR).
REPLICA_DATABASE_URL = env_str("REPLICA_DATABASE_URL")
REPLICA_MAX_LAG_SECONDS = env_int("REPLICA_MAX_LAG_SECONDS", 30)
REPLICA_CHECK_SECONDS = env_int("REPLICA_CHECK_SECONDS", 5)
# How long a page (the operational reports) waits for the replica to replay what the primary had
# committed before falling back to the primary: a user is waiting, background work waits up to
# REPLICA_MAX_LAG_SECONDS.
REPLICA_PAGE_WAIT_SECONDS = env_float("REPLICA_PAGE_WAIT_SECONDS", 0.5)

# A clock alert's e-mail claimed by a worker that has not stamped it within this many minutes
# (the worker was lost mid-send) is sent again by the next tick (trials.safety.alerts).
CLOCK_ALERT_EMAIL_RETRY_MINUTES = env_int("CLOCK_ALERT_EMAIL_RETRY_MINUTES", 10)
if REPLICA_DATABASE_URL:
    if not DATABASE_URL:
        raise ImproperlyConfigured("REPLICA_DATABASE_URL needs DATABASE_URL (the primary)")
    DATABASES["replica"] = dj_database_url.parse(REPLICA_DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    DATABASES["replica"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["edc.db_router.ReplicaRouter"]
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery ---------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
# At-least-once delivery: a task is acknowledged after it ran, and re-queued if its worker dies.
# Every task must therefore be idempotent (docs/architecture.md, "Celery").
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis re-delivers an unacknowledged message after the visibility timeout; it must be longer
# than any countdown/ETA we use (none exceeds an hour: later work is found by periodic scans).
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 12 * 3600)
CELERY_MAX_COUNTDOWN_SECONDS = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Issue 22: exports and safety summaries (long, CPU-heavy) on their own queue, so a sponsor's
# export never holds the worker slots the coordinators' work needs (schedules, reminders, clock
# alerts). Every worker command names the queues it consumes: docs/deployment.md, .ci/run.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_REPORTS_QUEUE = env_str("CELERY_REPORTS_QUEUE") or "reports"  # a test worker of its own takes another name
CELERY_TASK_ROUTES = {
    "trials.exports.tasks.export_run_task": {"queue": CELERY_REPORTS_QUEUE},
    "trials.safety.tasks.safety_summary_refresh": {"queue": CELERY_REPORTS_QUEUE},
    "trials.safety.tasks.safety_summaries_nightly": {"queue": CELERY_REPORTS_QUEUE},
    "trials.safety.tasks.safety_summaries_stale_scan": {"queue": CELERY_REPORTS_QUEUE},
}
# A safety summary refresh queued this long lost its worker (a killed node) or its message: the
# scan every 5 minutes (and the next AE save) enqueues it again (trials.safety.summary).
SAFETY_SUMMARY_STALE_MINUTES = env_int("SAFETY_SUMMARY_STALE_MINUTES", 10)

# --- Auth ---------------------------------------------------------------------------------

# django-axes first: a locked-out user or address is refused before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "trials.protocol.auth.EdcModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("username", "first_name", "last_name", "email")},
    },
    {"NAME": "trials.accounts.validators.PersonalNameValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sessions in the database, with the user's id beside them: a request reads its session and its
# user in one query (trials.accounts.session_store, issue 22).
SESSION_ENGINE = "trials.accounts.session_store"
# The user's one-to-one rows read in that same query (the menu's Study build link asks for it).
EDC_SESSION_USER_RELATED = ("study_builder",)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)  # absolute: a working day at most
# Automatic logoff after this many minutes without a request (trials.accounts.middleware).
SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 30)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Lockout (django-axes; 21 CFR 11.300(d), OWASP ASVS 2.2.1): after LOGIN_FAILURE_LIMIT wrong
# passwords for one user name, or from one address, logins from it are refused for
# LOGIN_LOCKOUT_MINUTES; an administrator unlocks earlier (admin "Access attempts", or
# `manage.py axes_reset_username NAME`). Every failure and lockout is in the login audit.
from datetime import timedelta as _timedelta  # noqa: E402

AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = _timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 30))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per user name and per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["password"]
# The client's address: REMOTE_ADDR, or behind the TLS proxy the last X-Forwarded-For hop it added.
AXES_CLIENT_IP_CALLABLE = "trials.accounts.services.client_ip"

# Two-factor authentication (TOTP + recovery codes, trials.accounts.twofactor): required after the
# password for staff and every role but the site coordinator. On by default in production; off in
# the demo unless REQUIRE_2FA=true (the demo shows a banner saying so).
EDC_REQUIRE_2FA = env_bool("REQUIRE_2FA", IS_PRODUCTION)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "EDC")

# Password re-entry to confirm an act (sign, unblind, decide a cohort): refused after this many
# wrong passwords within the window (21 CFR 11.300(d)).
EDC_REENTRY_FAILURE_LIMIT = env_int("REENTRY_FAILURE_LIMIT", 3)
EDC_REENTRY_WINDOW_MINUTES = env_int("REENTRY_WINDOW_MINUTES", 15)
# Staff PIN (taking a tablet back from participant mode): wrong PINs in a row before it locks, and for how long.
EDC_PIN_FAILURE_LIMIT = env_int("PIN_FAILURE_LIMIT", 5)
EDC_PIN_LOCKOUT_MINUTES = env_int("PIN_LOCKOUT_MINUTES", 15)
# An unanswered personal questionnaire link is listed in the coordinator's digest (once) when its
# window closes within this many hours, or when it was created more than 24 hours ago.
EDC_PRO_REMINDER_HOURS = env_int("PRO_REMINDER_HOURS", 24)

# --- Internationalisation and time --------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French")), ("es", _("Spanish"))]
LOCALE_PATHS = [BASE_DIR / "edc" / "locale"]  # catalogues: docs/translations.md
# The language switcher keeps the choice in this cookie and on the user (edc.ops.UserPreference),
# which the login applies again, so a shared ward computer shows each user her own language.
LANGUAGE_COOKIE_AGE = 30 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
USE_I18N = True
TIME_ZONE = "UTC"  # stored in UTC; each Site shows its own local time
# A date-time shown without edc_time's filters (an admin list) still says its zone (edc/formats/).
FORMAT_MODULE_PATH = ["edc.formats"]
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "staticfiles")
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or VAR_DIR / "media")
MEDIA_URL = "media/"
# Export files (trials.exports): a storage of their own, never served under MEDIA_URL (only the
# requester downloads them, through the export page). EXPORT_STORAGE_BACKEND may name any Django
# storage class; the default keeps them under MEDIA_ROOT/exports (or EXPORT_ROOT).
EXPORT_ROOT = Path(env_str("EXPORT_ROOT") or MEDIA_ROOT / "exports")
EXPORT_STORAGE = {
    "BACKEND": env_str("EXPORT_STORAGE_BACKEND") or "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": str(EXPORT_ROOT)} if not env_str("EXPORT_STORAGE_BACKEND") else {},
}
EXPORT_EXPIRY_DAYS = env_int("EXPORT_EXPIRY_DAYS", 7)
# A running export writes a heartbeat with its progress, and a thread of it every
# EXPORT_HEARTBEAT_SECONDS in between; one silent EXPORT_HEARTBEAT_TIMEOUT_MINUTES lost its worker (a
# killed node): the scan every minute queues it again for another worker (its partial file deleted;
# a late delivery of its old message does nothing), up to EXPORT_MAX_ATTEMPTS claims, then marks it
# failed (its requester may Retry). Issue 22; docs/architecture.md, "Several machines".
EXPORT_HEARTBEAT_SECONDS = env_int("EXPORT_HEARTBEAT_SECONDS", 20)
EXPORT_HEARTBEAT_TIMEOUT_MINUTES = env_int("EXPORT_HEARTBEAT_TIMEOUT_MINUTES", 5)
EXPORT_MAX_ATTEMPTS = env_int("EXPORT_MAX_ATTEMPTS", 3)
# Files of CRF `file` items (trials.visits.files): never under MEDIA_URL, only sent by the scoped
# download view. CRF_FILES_STORAGE_BACKEND may name any Django storage class (e.g. django-storages'
# S3 backend, configured by its own AWS_* settings: docs/deployment.md); the default keeps them
# under MEDIA_ROOT/crf-files (or CRF_FILES_ROOT).
CRF_FILES_ROOT = Path(env_str("CRF_FILES_ROOT") or MEDIA_ROOT / "crf-files")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "exports": EXPORT_STORAGE,
    "crf_files": {
        "BACKEND": env_str("CRF_FILES_STORAGE_BACKEND") or "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(CRF_FILES_ROOT)} if not env_str("CRF_FILES_STORAGE_BACKEND") else {},
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"
# Django's form renderer with the <input> widgets written in Python (edc/form_renderer.py, issue 22).
FORM_RENDERER = "edc.form_renderer.FormRenderer"

# --- E-mail -------------------------------------------------------------------------------

EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if IS_PRODUCTION else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "edc@localhost")

# --- Security -----------------------------------------------------------------------------

# Bootstrap and htmx are served from static/: the policy allows only this origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

if IS_PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
    if env_bool("BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Audit --------------------------------------------------------------------------------

SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True
SIMPLE_HISTORY_REVERT_DISABLED = True  # a revert is a new change with its own reason

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "WARNING"}},
}

# Demo logins (fixtures/demo_users.yaml) are refused by the login backend in production.
EDC_DEMO_USERS_FILE = BASE_DIR / "fixtures" / "demo_users.yaml"

# Bootstrap's alert classes for Django's message levels.
from django.contrib.messages import constants as _message_levels  # noqa: E402

MESSAGE_TAGS = {_message_levels.ERROR: "danger"}

# --- REST API (trials.api, docs/api.md) ----------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trials.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["trials.api.authentication.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["trials.api.authentication.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
EDC_API_RATE = env_str("API_RATE", "600/min")  # requests per token
SPECTACULAR_SETTINGS = {
    "TITLE": "EDC API",
    "DESCRIPTION": "Trials, sites, visit plan, CRFs, participants, visits, CRF entries, AEs, queries, audit trails; "
    "CRF entry saves and lab imports. Authenticate with a personal token: Authorization: Bearer edc_…",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CausalityEnum": "trials.safety.models.Causality",
        "RecruitmentStatusEnum": "trials.protocol.models.RecruitmentStatus",
    },
}
