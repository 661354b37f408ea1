# Threads Console: one image for the web app (gunicorn), the worker (db_worker) and any
# `manage.py` command; see docker/entrypoint.sh and the README's quick start.
#
# Debian's Python 3.11 (the Python the suite runs on), installed once (one apt step for both
# stages), and the pinned requirements in a venv built in a second stage, so that pip and its
# caches stay out of the image that runs.
FROM debian:bookworm-slim AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --create-home --shell /usr/sbin/nologin app

FROM python AS build
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Behind an intercepting proxy, pass its CA bundle as the build secret "ca" (`--secret
# id=ca,src=/etc/ssl/certs/ca-certificates.crt`): it is mounted for this step only, never in a layer.
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM python
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=dashboard.settings
WORKDIR /app
# Only what runs is copied (.dockerignore lists it): no .git, .venv, databases, caches, outboxes
# or .env. The files stay root's: the app cannot change its own code.
COPY . /app
# Static files are collected (and compressed, with whitenoise's manifest) at build time. Debug
# mode only lets the settings load without the secrets, which this step does not use. The
# exports volume's mount point is the app's: a new named volume takes its owner from it.
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput --verbosity 0 \
 && python -m compileall -q /app \
 && install -d -o app -g app -m 0700 /var/lib/threads-console/exports
USER app
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
