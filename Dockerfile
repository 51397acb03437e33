# grokproxy: gunicorn (gthread) on a slim Python, as a non-root user.
# The schema is migrated by gunicorn.conf.py's on_starting hook before any worker starts, as
# outside a container. tests/test_container.py runs this file's commands as a script.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt ./
RUN python -m venv /app/venv && /app/venv/bin/pip install -q -r requirements.txt

COPY wsgi.py gunicorn.conf.py ./
COPY migrations ./migrations
COPY grokproxy ./grokproxy

# A system user that owns only the instance folder (the generated secret key, a SQLite file).
RUN useradd --system --uid 10001 --home-dir /app grokproxy \
    && mkdir -p /app/instance && chown grokproxy /app/instance
USER grokproxy

ENV PATH=/app/venv/bin:$PATH \
    GUNICORN_BIND=0.0.0.0:8000 \
    GROKPROXY_INSTANCE_PATH=/app/instance

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
