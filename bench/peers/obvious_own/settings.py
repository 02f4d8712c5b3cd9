"""The settings of bench/peers/obvious with this app's models in place of the service's."""

from __future__ import annotations

from bench.peers.obvious.settings import *  # noqa: F403

INSTALLED_APPS = [
    "bench.peers.obvious_own" if app == "integrations" else app
    for app in INSTALLED_APPS  # noqa: F405
]
OBVIOUS_MODELS = "obvious_own"
