"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, `flask --app wsgi …`.

A configuration error stops the start with one line naming the variable, not a traceback.
"""

import sys

from grokproxy import create_app
from grokproxy.config import ConfigError, config_error_line

try:
    app = create_app()
except ConfigError as error:
    sys.exit(config_error_line(error))
