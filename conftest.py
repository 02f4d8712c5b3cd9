"""Fixtures shared by every test module."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from rest_framework.test import APIClient

from accounts.services import token_create
from common.database import is_postgresql
from integrations.models import Channel, FailedIntegration, IntegrationAction


def pytest_collection_modifyitems(config, items):
    """`postgres_only` tests cover PostgreSQL-only features; they run in the PostgreSQL pass
    of scripts/test (required in CI) and are skipped, saying so, in the SQLite pass."""
    if is_postgresql():
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: runs in the PostgreSQL pass")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_policy_cache():
    """Channel ids come back between tests: no policy may outlive its test."""
    from integrations.lifecycle.policies import forget_policies

    forget_policies()
    yield
    forget_policies()


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="operator", password="s3cret-pass")


@pytest.fixture
def staff_user(db):
    """A staff user as an upgrade from before roles leaves one: operator on every channel."""
    from integrations.models import ChannelGrant

    user = get_user_model().objects.create_user(
        username="admin", password="s3cret-pass", is_staff=True
    )
    ChannelGrant.objects.create(user=user, channel=None, role="operator")
    return user


@pytest.fixture
def token_key(staff_user) -> str:
    return token_create(user=staff_user, name="test")[1]


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture
def api_client(token_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_key}")
    return client


@pytest.fixture
def channel(db) -> Channel:
    return Channel.objects.create(name="Marketplace A")


@pytest.fixture
def other_channel(db) -> Channel:
    return Channel.objects.create(name="Marketplace B")


# get_or_create: a transactional test empties every table after it runs, the content types
# that the first migration made included.
@pytest.fixture
def product_type(db) -> ContentType:
    return ContentType.objects.get_or_create(app_label="products", model="product")[0]


@pytest.fixture
def order_type(db) -> ContentType:
    return ContentType.objects.get_or_create(app_label="orders", model="order")[0]


@pytest.fixture
def integration_action(channel, product_type) -> IntegrationAction:
    return IntegrationAction.objects.create(
        channel=channel, content_type=product_type, object_id=42, remote_id="R-42"
    )


VERSION_DATE = dt.datetime(2025, 6, 27, 8, 38, 26, 936000, tzinfo=dt.UTC)


@pytest.fixture
def make_failed(channel, product_type):
    """Creates failed integrations: make_failed(object_id=..., **fields)."""

    def make(**fields) -> FailedIntegration:
        values = {
            "channel": channel,
            "content_type": product_type,
            "object_id": 1,
            "reason_type": "remote",
            "version_date": VERSION_DATE,
        }
        values.update(fields)
        return FailedIntegration.objects.create(**values)

    return make
