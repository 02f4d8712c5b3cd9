"""The settings of bench/obvious with this app's models in place of the service's."""

from __future__ import annotations

from bench.obvious.settings import *  # noqa: F403

INSTALLED_APPS = [
    "bench.obvious_own" if app == "integrations" else app
    for app in INSTALLED_APPS  # noqa: F405
]
OBVIOUS_MODELS = "obvious_own"
