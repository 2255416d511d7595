# One image for the api, worker and scheduler containers (and the reset tool); the compose
# service's command picks the role, the same commands `make run` starts (see Procfile).
ARG PYTHON_VERSION=3.11

# --- dependencies: only pyproject.toml's list, so editing the code does not reinstall them ---
FROM python:${PYTHON_VERSION}-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /tmp/pyproject.toml
# The runtime dependencies exactly as pinned in pyproject.toml (no test extras).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime: slim base, the virtualenv, the code, a non-root user ---------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0
# A regular (not --system) user and its own group, both 10001: --system would warn that 10001 is
# above SYS_UID_MAX and give it a system group id (999). --no-log-init: no lastlog/faillog entry,
# which for a high uid is a large sparse file in the image.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --no-log-init --no-create-home --home-dir /app --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code owned by root and read-only for the app user: a compromised process cannot rewrite it.
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY tasktypes ./tasktypes
COPY consumer ./consumer
COPY utils ./utils
USER app
EXPOSE 8000
# Valid for every role: the process can reach Redis with its own settings. Compose replaces it
# with a sharper check per service (the API's /health, the worker's consumer heartbeat).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "from core.redis import sync_client; from core.settings import get_settings; sync_client(get_settings()).ping()"]
CMD ["python", "-m", "api"]
