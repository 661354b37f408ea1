"""Settings for Threads Console, read from the environment (see README "Configuration").

With DJANGO_DEBUG off (the default) the secrets below are required and the app refuses to
start without them. With DJANGO_DEBUG on, insecure development values fill any gap so that
`make demo` needs no configuration.
"""

from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from dashboard import sso
from dashboard.env import email_settings, env, env_bool, env_float, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret(name: str, dev_value: str) -> str:
    """A required secret in production; a fixed development value when DEBUG is on."""
    value = env(name, "")
    if value:
        return value
    if DEBUG:
        return dev_value
    raise ImproperlyConfigured(
        f"{name} must be set when DJANGO_DEBUG is off (see README, Configuration)."
    )


SECRET_KEY = _secret("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
# Fernet keys, comma-separated; the first one encrypts, all of them decrypt. Empty counts as
# unset (as for the other secrets): `.env.example`'s blank line in debug mode gets the dev key.
CREDENTIAL_ENCRYPTION_KEYS = env_list("CREDENTIAL_ENCRYPTION_KEYS", []) or (
    ["ZGV2LW9ubHktaW5zZWN1cmUtZmVybmV0LWtleS0wMDA="] if DEBUG else []
)
if not CREDENTIAL_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "CREDENTIAL_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is off (see README)."
    )
AUDIT_HMAC_KEY = _secret("AUDIT_HMAC_KEY", "dev-only-insecure-audit-hmac-key")
# Signed checkpoints of the audit chain's end, kept outside the database: logged on
# "threads_app.audit.checkpoints" and, if this is set, appended to this file (one JSON line each).
AUDIT_CHECKPOINT_FILE = env("AUDIT_CHECKPOINT_FILE", "")
# A checkpoint each time the chain passes a multiple of this many events; 0: only on
# `manage.py audit_checkpoint`.
_checkpoint_every = env("AUDIT_CHECKPOINT_EVERY", "1000").strip()
if not _checkpoint_every.isdecimal():
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_EVERY must be a whole number, 0 or more.")
AUDIT_CHECKPOINT_EVERY = int(_checkpoint_every)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

UMAMIAI_BASE_URL = env("UMAMIAI_BASE_URL", "https://api.umamiai.xyz/v1")
UMAMIAI_CONNECT_TIMEOUT = env_float("UMAMIAI_CONNECT_TIMEOUT", 5.0)
UMAMIAI_READ_TIMEOUT = env_float("UMAMIAI_READ_TIMEOUT", 30.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "django_prometheus",
    "ninja",  # the automation API's docs page: Swagger UI from its static files, no CDN
    # threads_app comes before django_tasks_db: Django runs the first app's management command
    # of a name, so `manage.py db_worker` is threads_app's (the worker with a heartbeat).
    "threads_app",
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    # Requests and latency per view, always counted in process; served only when
    # METRICS_ENABLED is on (see "Operability" below).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "threads_app.middleware.HtmxMessagesMiddleware",
    "threads_app.middleware.PrivatePagesMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "threads_app.middleware.TwoFactorEnrolmentMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "threads_app.accounts.AuthenticationBackend",  # allauth's, with the two-factor facts
]
# The client IP behind reverse proxies (threads_app/client_ip.py): off unless configured.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
CLIENT_IP_HEADER = "HTTP_" + env("CLIENT_IP_HEADER", "X-Forwarded-For").upper().replace("-", "_")
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
# A username and an address together: failures from one address never lock the account for
# everyone else, and one locked address does not lock out every user behind the same proxy.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "threads_app.client_ip.client_ip"
# The username as log-in compares it (lower-cased): a case variant shares the account's count.
AXES_USERNAME_CALLABLE = "threads_app.lockout.axes_username"
# Kept out of axes' record of a failed attempt's form (passwords always are).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code", "login"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
                "threads_app.context_processors.abilities",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # BEGIN IMMEDIATE serializes writers up front (no lock-upgrade deadlocks), WAL lets
    # readers run beside them; both matter for concurrent deletes appending to the audit chain.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# Background work: Django's tasks framework (the django-tasks backport), queued in the database
# and run by `manage.py db_worker`. TASKS_BACKEND=immediate runs a task inside the caller
# instead (no worker: a one-off script, a debugging session); never for production.
TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
}
_task_backend = env("TASKS_BACKEND", "database")
if _task_backend not in TASK_BACKENDS:
    raise ImproperlyConfigured(f"TASKS_BACKEND must be one of {', '.join(TASK_BACKENDS)}.")
TASKS = {"default": {"BACKEND": TASK_BACKENDS[_task_backend]}}
# Every worker writes a heartbeat this often; a RUNNING task whose worker has not beaten for
# WORKER_LEASE_SECONDS is abandoned, and the sweep (at most every WORKER_SWEEP_SECONDS, by any
# live worker) marks it failed so that the work behind it can be resumed.
WORKER_HEARTBEAT_SECONDS = env_float("WORKER_HEARTBEAT_SECONDS", 5.0)
WORKER_LEASE_SECONDS = env_float("WORKER_LEASE_SECONDS", 30.0)
WORKER_SWEEP_SECONDS = env_float("WORKER_SWEEP_SECONDS", 10.0)
if WORKER_LEASE_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "WORKER_LEASE_SECONDS must be at least twice WORKER_HEARTBEAT_SECONDS: one late beat "
        "must not make a live worker look dead."
    )

# Operability: Prometheus metrics are off unless METRICS_ENABLED; the deployment restricts
# METRICS_PATH to its scraper (README, "Operability").
METRICS_ENABLED = env_bool("METRICS_ENABLED", False)
METRICS_PATH = env("METRICS_PATH", "metrics/").strip("/") + "/"
if METRICS_PATH == "/":
    raise ImproperlyConfigured("METRICS_PATH must name a path, e.g. metrics/.")

# The automation API's rate limit: requests per token per window (threads_app/api/base.py),
# counted in the database so every instance shares one count.
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 600)
API_RATE_WINDOW_SECONDS = env_int("API_RATE_WINDOW_SECONDS", 60)
if API_RATE_LIMIT < 1 or API_RATE_WINDOW_SECONDS < 1:
    raise ImproperlyConfigured("API_RATE_LIMIT and API_RATE_WINDOW_SECONDS must be 1 or more.")

# Webhooks (threads_app/webhook_http.py): receivers on private and loopback addresses are
# refused unless WEBHOOK_ALLOW_PRIVATE (the demo's and the tests' receivers are on this
# machine); WEBHOOK_CA_BUNDLE names a PEM file of the CAs receivers' certificates may chain
# to, instead of the system's store (a private CA; the tests' own).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_CA_BUNDLE = env("WEBHOOK_CA_BUNDLE", "") or None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "threads_app:overview"
LOGOUT_REDIRECT_URL = "account_login"

# Accounts (django-allauth): log in by username, password change and reset by email, TOTP with
# recovery codes, reauthentication. Nobody signs up on their own: administrators create
# accounts, and an emailed invitation lets a new person set a password (services/accounts.py).
ACCOUNT_ADAPTER = "threads_app.accounts.AccountAdapter"
MFA_ADAPTER = "threads_app.accounts.MFAAdapter"
# The reset form refuses the email domains that log in through single sign-on.
ACCOUNT_FORMS = {"reset_password": "threads_app.forms.sso.ResetPasswordForm"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Threads Console] "
# A reset asked for an unknown address answers the same and sends nothing (allauth's "no
# account" email would invite to a sign-up that does not exist).
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
# One lockout policy: django-axes (username + IP, above) locks log-ins, counting wrong passwords
# and wrong two-factor codes alike (threads_app/lockout.py); allauth's own log-in limits are off
# (its two-factor code limit rides on "login_failed"). Its other limits stay: emails sent
# (password resets), and the join page's tries.
ACCOUNT_RATE_LIMITS = {
    "login": False,
    "login_failed": False,
    # The join page of an invitation's link (views/invitations.py): tries per client address
    # (an IPv6 address counts by its /64) and per link.
    "invitation_join": "30/h/ip,10/h/key",
}
# A sensitive action needs the password or a code within the last REAUTHENTICATION_SECONDS
# (15 minutes by default; the log-in counts), see threads_app/accounts.py.
ACCOUNT_REAUTHENTICATION_TIMEOUT = env_int("REAUTHENTICATION_SECONDS", 15 * 60, minimum=1)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# The code forms check the lockout before the code (threads_app/forms/accounts.py).
MFA_FORMS = {
    "authenticate": "threads_app.forms.accounts.AuthenticateForm",
    "reauthenticate": "threads_app.forms.accounts.ReauthenticateForm",
}
MFA_TOTP_ISSUER = "Threads Console"
# Accounts come from administrators and invitations, so their emails are not verified by allauth.
MFA_ALLOW_UNVERIFIED_EMAIL = True
# Everyone must turn on two-factor at their next log-in.
REQUIRE_2FA = env_bool("REQUIRE_2FA", False)

# Single sign-on (README, "Single sign-on (OpenID Connect)"): django-allauth's `socialaccount`
# with its `openid_connect` provider, configured from the environment only (no SocialApp rows);
# threads_app/sso.py checks each ID token (signature, issuer, audience, expiry, nonce) and
# provisions accounts, services/sso.py applies the team mapping.
SOCIALACCOUNT_ADAPTER = "threads_app.sso.SocialAccountAdapter"
_oidc_apps = sso.oidc_apps(env("OIDC_PROVIDERS", ""))
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, Any]] = {
    "openid_connect": {
        "provider_class": "threads_app.sso.OpenIDConnectProvider",
        "OAUTH_PKCE_ENABLED": True,
        "APPS": _oidc_apps,
    }
}
_provider_ids = {str(app["provider_id"]) for app in _oidc_apps}
SSO_REQUIRED_DOMAINS = sso.required_domains(env("SSO_REQUIRED_DOMAINS", ""), _provider_ids)
OIDC_TEAM_MAPPING = sso.team_mapping(env("OIDC_TEAM_MAPPING", ""), _provider_ids)
SSO_MFA_ACR_VALUES = sso.acr_values(env("SSO_MFA_ACR_VALUES", ""))
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # linking by email is threads_app/sso.py's rule
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_STORE_TOKENS = False  # the provider's tokens are not kept
SOCIALACCOUNT_LOGIN_ON_GET = False  # a GET asks to confirm; the log-in page's buttons POST

# One cache for every instance, in the database: allauth's remaining limits (password-reset
# emails, two-factor codes tried) count in it, so several app instances share one count, as
# they share sessions and axes' lockouts. Its table comes from `manage.py createcachetable`
# (`make run` and the demo run it; a test database gets it when it is created).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "threads_console_cache",
    }
}

# Email: EMAIL_URL (dashboard/env.py reads it); by default in debug mode `outbox:`, which writes
# to the console and keeps a copy that DEBUG's /dev/emails/ page lists.
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Threads Console <threads-console@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
_email = email_settings(env("EMAIL_URL", "") or ("outbox:" if DEBUG else "smtp://localhost:25"))
EMAIL_BACKEND = _email.backend
EMAIL_HOST, EMAIL_PORT = _email.host, _email.port
EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email.user, _email.password
EMAIL_USE_TLS, EMAIL_USE_SSL = _email.use_tls, _email.use_ssl
# Where the `outbox:` backend keeps its copies.
EMAIL_FILE_PATH = env("EMAIL_OUTBOX_DIR", str(BASE_DIR / "sent-emails"))
EMAIL_TIMEOUT = 10

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Exports by selection (services/exports.py): gzip JSON Lines files kept EXPORT_TTL_DAYS after
# their job finished, through the "exports" storage: a directory (EXPORT_DIR) by default; any
# Django storage works (README, "Exports": an S3-compatible bucket through django-storages).
EXPORT_DIR = env("EXPORT_DIR", str(BASE_DIR / "exports"))
EXPORT_TTL_DAYS = env_int("EXPORT_TTL_DAYS", 7, minimum=1)
EXPORT_STORAGE = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": EXPORT_DIR, "directory_permissions_mode": 0o700},
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    "exports": EXPORT_STORAGE,
}

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        # The single sign-on providers' too: a log-in button's answer redirects there.
        "form-action": [SELF, *sso.issuer_origins(_oidc_apps)],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}

SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: htmx sends the token from <body hx-headers>, forms post it.
CSRF_COOKIE_HTTPONLY = True
# The app's page for a failed check (threads_app/views/errors.py), which never reads the body.
CSRF_FAILURE_VIEW = "threads_app.views.errors.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Served over HTTPS by a TLS-terminating proxy: on by default with debug off. DJANGO_HTTPS=0 is
# for trying the compose stack over http://localhost (README, "Run it with Docker Compose").
HTTPS = env_bool("DJANGO_HTTPS", not DEBUG)
if HTTPS:
    # Production sits behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # A load balancer's health probe often speaks plain HTTP to the instance: it gets the
    # answer, not a redirect to HTTPS (README, "Operability").
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "threads_app.redaction.RedactSecretsFilter"},
        "one_line": {"()": "threads_app.redaction.OneLineFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    # Audit checkpoints are logged whatever DJANGO_LOG_LEVEL says: ship them off the machine.
    "loggers": {
        "threads_app.audit.checkpoints": {"level": "INFO"},
        # A request for a Host not in ALLOWED_HOSTS: one line (Django adds a traceback).
        "django.security.DisallowedHost": {"filters": ["one_line"]},
    },
}
