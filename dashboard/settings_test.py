"""Settings for the test suite: production settings with fixed test secrets and plain HTTP."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF"
)
os.environ.setdefault(
    "CREDENTIAL_ENCRYPTION_KEYS",
    "dGVzdC1vbmx5LWZlcm5ldC1rZXktbnVtYmVyLW9uZS0=,dGVzdC1vbmx5LWZlcm5ldC1rZXktbnVtYmVyLXR3by0=",
)
os.environ.setdefault("AUDIT_HMAC_KEY", "test-only-audit-hmac-key")
# The tests' webhook receivers listen on 127.0.0.1 (tests turn it off to see refusals).
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "1")
# Exports go to a directory of this run's (removed at its end), which the workers it starts
# inherit through the environment.
if "EXPORT_DIR" not in os.environ:
    os.environ["EXPORT_DIR"] = tempfile.mkdtemp(prefix="threads-console-exports-")
    atexit.register(shutil.rmtree, os.environ["EXPORT_DIR"], True)

from dashboard.settings import *  # noqa: F403

# The live server and the test client speak plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
# Fast password hashing: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "exports": EXPORT_STORAGE,  # noqa: F405
}

# One test database per process, as several test runs may share a machine (or a PostgreSQL
# server); Django drops it at the end of the run. For SQLite a file, not the in-memory database:
# the audit concurrency test appends from 20 threads, each with its own connection, and a
# shared-cache memory database answers "table is locked" where a file waits its turn
# (transaction_mode=IMMEDIATE).
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"threads-console-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"  # noqa: F405
    }
# Serve static files straight from the app folders (no collectstatic before the tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
