"""gunicorn's configuration of the service, for those who run gunicorn themselves rather than
`manage.py serve` (which runs gunicorn with these same settings: common/server.py):

    gunicorn -c deploy/gunicorn.conf.py config.wsgi:application

from the checkout, with the environment of failed-integrations.env.example (BIND,
WEB_CONCURRENCY, LOG_FORMAT, PROMETHEUS_MULTIPROC_DIR, ...), after `manage.py migrate`.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Several processes: their metrics are added up (before prometheus_client is imported).
from ops import multiprocess

multiprocess.prepare()

import django  # noqa: E402

django.setup()

from common.server import default_bind, default_workers, gunicorn_settings  # noqa: E402

globals().update(gunicorn_settings(bind=default_bind(), workers=default_workers()))
