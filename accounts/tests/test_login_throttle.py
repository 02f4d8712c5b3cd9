"""Logins are throttled per client address across every process, at the API and at the admin
alike, and every failed one is logged as one bounded line."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection
from django.test import override_settings

from accounts import throttle

LOGIN_URL = "/api/v1/auth/login/"
ADMIN_LOGIN_URL = "/admin/login/"


# On SQLite the statement is atomic by the database's single writer; the test database is in
# memory with a shared cache there, where concurrent writers fail rather than wait.
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_never_pass_more_than_the_limit():
    """40 attempts at once (each thread a connection of its own, as gunicorn's workers are)
    against a limit of 10: exactly 10 pass."""
    passed, errors = [], []
    start = threading.Barrier(8)

    def attempts():
        try:
            start.wait()
            for _ in range(5):
                if throttle.hit("login:198.51.100.7", "10/hour") is None:
                    passed.append(1)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempts) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(passed) == 10


@pytest.mark.django_db
@override_settings(LOGIN_RATE="3/minute")
def test_the_admin_login_is_throttled_and_shares_the_api_s_budget(client, staff_user):
    wrong = {"username": "admin", "password": "wrong"}

    answers = [
        client.post(LOGIN_URL, wrong, content_type="application/json").status_code,
        client.post(ADMIN_LOGIN_URL, wrong).status_code,
        client.post(ADMIN_LOGIN_URL, wrong).status_code,
        client.post(ADMIN_LOGIN_URL, wrong).status_code,
    ]
    right = client.post(ADMIN_LOGIN_URL, {"username": "admin", "password": "s3cret-pass"})

    assert answers == [400, 200, 200, 429]  # the admin answers its form again, then 429
    # Even the right password waits: the address is throttled, not the guess.
    assert right.status_code == 429
    assert 0 < int(right["Retry-After"]) <= 60
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_failed_admin_login_is_logged_as_one_bounded_line(client, staff_user, caplog):
    typed = "Tr0ub4dor&3-is-my-password-and-more-text-beyond-the-bound\r\nFORGED"

    with caplog.at_level(logging.WARNING, logger="accounts.login"):
        client.post(ADMIN_LOGIN_URL, {"username": typed, "password": "wrong"})

    (logged,) = [r for r in caplog.records if "failed login" in r.getMessage()]
    message = logged.getMessage()
    assert "Tr0ub4dor" in message and "127.0.0.1" in message
    assert "\n" not in message and "\r" not in message and "FORGED" not in message
