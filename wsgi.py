"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from grokproxy import create_app

app = create_app()
