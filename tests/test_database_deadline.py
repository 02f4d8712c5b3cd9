"""A database that stops answering without closing its connections (here: a proxy between the
service and PostgreSQL that stops forwarding) holds nothing for long: a statement fails within
DB_ANSWER_TIMEOUT, a new connection within DB_CONNECT_TIMEOUT, each as a lost database (an
OperationalError), and the next use once it answers again connects afresh; the API answers
503 `database_unavailable` with `Retry-After`, through both front doors."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, connections
from django.db.utils import load_backend

from common.postgresql import base as postgresql_base
from common.postgresql.base import answers_within, timed_out
from tests.proxy import FreezingProxy

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy():
    running = FreezingProxy(int(connection.settings_dict["PORT"] or 5432))
    yield running
    running.close()


@pytest.fixture
def through_proxy(proxy):
    """A connection to the test database through `proxy`, as the service's are made."""
    settings = {
        **connections["default"].settings_dict,
        "HOST": "127.0.0.1",
        "PORT": str(proxy.port),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {**connections["default"].settings_dict["OPTIONS"], "connect_timeout": 1},
    }
    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "through_proxy")
    yield wrapper
    wrapper.close()


def one(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def timed(call):
    started = time.monotonic()
    try:
        call()
    except OperationalError as exc:
        return time.monotonic() - started, exc
    raise AssertionError("no error")


def test_a_statement_gives_up_at_the_deadline_and_the_next_connects_afresh(proxy, through_proxy):
    with answers_within(1):
        assert one(through_proxy) == 1
        proxy.freeze()

        seconds, exc = timed(lambda: one(through_proxy))
        assert 0.9 <= seconds < 3, seconds
        assert timed_out(exc) and "did not answer within 1 s" in str(exc)
        assert through_proxy.connection is None or through_proxy.connection.closed

        through_proxy.close()
        seconds, exc = timed(lambda: one(through_proxy))  # connecting, while frozen
        assert seconds < 3 and timed_out(exc), (seconds, exc)

        proxy.thaw()
        through_proxy.close()
        assert one(through_proxy) == 1


def test_without_a_deadline_a_statement_waits(proxy, through_proxy):
    """Migrations and housekeeping set none: a slow statement is not cut off."""
    assert one(through_proxy) == 1
    with through_proxy.cursor() as cursor:
        started = time.monotonic()
        cursor.execute("SELECT pg_sleep(1.5)")
    assert time.monotonic() - started >= 1.5


@pytest.fixture
def frozen_service(proxy, monkeypatch):
    """The test's own connection goes through the proxy; the process's deadline (the web
    server's, as config/wsgi.py sets it) is 1 s."""
    monkeypatch.setattr(postgresql_base, "_process_answer_timeout", 1)
    default = connections["default"]
    default.close()
    monkeypatch.setitem(default.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(default.settings_dict, "PORT", str(proxy.port))
    monkeypatch.setitem(
        default.settings_dict, "OPTIONS", {**default.settings_dict["OPTIONS"], "connect_timeout": 1}
    )
    yield proxy
    proxy.thaw()
    default.close()


@pytest.mark.parametrize("front_door", ["fast path", "regular view"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_api_answers_503_within_the_deadline(
    frozen_service, api_client, staff_user, channel, method, front_door
):
    """The fast path (which serves a token's requests) and the regular view alike."""
    from rest_framework.test import APIClient

    url = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    if front_door == "regular view":
        api_client = APIClient()
        api_client.force_authenticate(user=staff_user)
    assert api_client.get(url).status_code == 200  # connected through the proxy
    frozen_service.freeze()

    started = time.monotonic()
    response = (
        api_client.get(url)
        if method == "GET"
        else api_client.post(url, {}, content_type="application/json")
    )
    seconds = time.monotonic() - started

    assert response.status_code == 503, response.content
    assert response.json()["code"] == "database_unavailable"
    assert int(response["Retry-After"]) > 0
    assert seconds < 2.5, seconds
