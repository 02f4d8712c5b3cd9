"""gunicorn, run in-process so that `manage.py serve` is the one command to start the API; its
settings are also deploy/gunicorn.conf.py's, for those who run gunicorn themselves."""

from __future__ import annotations

import copy
import os

from django.conf import settings
from django.db import connections
from gunicorn.app.base import BaseApplication

from ops.multiprocess import child_exit


class _Application(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from config.wsgi import application

        return application


def _log_config() -> dict:
    """The service's logging, for gunicorn's own lines too (start-up, workers, shutdown): in
    the configured LOG_FORMAT, so that LOG_FORMAT=json gives one JSON object every line."""
    config = copy.deepcopy(settings.LOGGING)
    config["loggers"]["gunicorn.error"] = {
        "handlers": ["console"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def default_bind() -> str:
    return os.environ.get("BIND", "127.0.0.1:8000")


def default_workers() -> int:
    return int(os.environ.get("WEB_CONCURRENCY", "2"))


def gunicorn_settings(*, bind: str, workers: int) -> dict:
    """The service's gunicorn settings."""
    return {
        "logconfig_dict": _log_config(),
        "bind": bind,
        "workers": workers,
        # The access log is the service's own (ops.middleware): one line a request, in the
        # configured LOG_FORMAT, with its request id.
        "accesslog": None,
        "child_exit": child_exit,
        "timeout": 60,
        "graceful_timeout": 30,
        # Connections are opened per worker after the fork (persistent on PostgreSQL).
        "preload_app": True,
        "control_socket_disable": True,
    }


def serve(*, bind: str, workers: int, **options) -> None:
    config = {**gunicorn_settings(bind=bind, workers=workers), **options}
    # The master has used the database (migrations); its connections must not be shared with
    # the forked workers.
    connections.close_all()
    _Application(config).run()
