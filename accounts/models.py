from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

KEY_BYTES = 20  # 40 hex characters, the shape of the original API's keys
PREFIX_LENGTH = 8


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return secrets.token_hex(KEY_BYTES)


class Token(models.Model):
    """An API key. Only its SHA-256 is stored: a copy of the database yields no usable key."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the key, so that an operator can tell tokens apart.
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False)
    created_date = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # When the token last authenticated a request, to the minute (`usage.note_use`).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class AttemptCount(models.Model):
    """How many attempts a key (a login's client address) made in one window of time, counted
    atomically across processes (`throttle.hit`)."""

    key = models.CharField(max_length=200)
    window_number = models.BigIntegerField()  # the window's start // its length, in seconds
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "window_number"], name="attempt_count_unique_key_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.count} in window {self.window_number}"
