"""Login attempts per client address, limited to LOGIN_RATE across every process: the API's
login and the admin's share one count, so that alternating between them gains nothing.

Each attempt is counted by one atomic statement (an upsert that answers the new count), so
that concurrent attempts against many workers cannot all read the same old count and pass, as
a read-then-write of a cache lets them.
"""

from __future__ import annotations

import logging
import random
import time

from django.conf import settings
from django.db import connection
from rest_framework.throttling import BaseThrottle

from .models import AttemptCount

logger = logging.getLogger("accounts.login")

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`10/minute` -> (10, 60): attempts and the window's seconds."""
    number, _, period = rate.partition("/")
    return int(number), PERIODS[period.strip()[0]]


def hit(key: str, rate: str) -> float | None:
    """Counts one attempt of `key`; answers None when it is within `rate`, else the seconds to
    wait until the window ends."""
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    table = connection.ops.quote_name(AttemptCount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, window_number, count) VALUES (%s, %s, 1) "  # noqa: S608
            f"ON CONFLICT (key, window_number) DO UPDATE SET count = {table}.count + 1 "
            "RETURNING count",
            [key, window],
        )
        count = cursor.fetchone()[0]
    if random.random() < 0.01:  # housekeeping: windows that ended over a day ago count no more
        AttemptCount.objects.filter(window_number__lt=window - max(1, 86400 // period)).delete()
    if count <= limit:
        return None
    return max(1.0, (window + 1) * period - now)


def client_address(request) -> str:
    """The client's address as the API's throttles see it (NUM_PROXIES, X-Forwarded-For)."""
    return BaseThrottle().get_ident(request)


def login_wait(request) -> float | None:
    """Counts a login attempt of the request's client; answers the seconds it must wait, or
    None when it may try."""
    address = client_address(request)
    wait = hit(f"login:{address}", settings.LOGIN_RATE)
    if wait is not None:
        logger.warning("login throttled for %s (LOGIN_RATE %s)", address, settings.LOGIN_RATE)
    return wait


class LoginThrottle(BaseThrottle):
    """The API login's throttle: `login_wait`."""

    def allow_request(self, request, view) -> bool:
        self.wait_seconds = login_wait(request)
        return self.wait_seconds is None

    def wait(self) -> float | None:
        return self.wait_seconds
