from __future__ import annotations

import io

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from integrations.choices import INTEGRABLE_CONTENT_TYPES

pytestmark = pytest.mark.django_db

URL = "/api/v1/content_types/"


def all_content_types(client) -> list[dict]:
    results, url = [], URL + "?limit=1000"
    while url:
        body = client.get(url).json()
        results += body["results"]
        url = body["next"]
    return results


def test_the_integrable_objects_are_known_from_the_first_migration(api_client):
    listed = {(row["app_label"], row["model"]) for row in all_content_types(api_client)}

    assert set(INTEGRABLE_CONTENT_TYPES) <= listed
    assert {model for _, model in INTEGRABLE_CONTENT_TYPES} >= {
        "product",
        "productprice",
        "productstock",
        "productimage",
        "order",
        "orderitem",
        "cancellationrequest",
        "categorynode",
    }


def test_each_row_has_id_app_label_and_model(api_client):
    product = ContentType.objects.get(app_label="products", model="product")

    rows = all_content_types(api_client)

    assert {"id": product.pk, "app_label": "products", "model": "product"} in rows


def test_filter_by_app_label_and_model(api_client):
    product = ContentType.objects.get(app_label="products", model="product")

    body = api_client.get(URL, {"app_label": "products", "model": "product"}).json()

    assert body["count"] == 1
    assert body["results"] == [{"id": product.pk, "app_label": "products", "model": "product"}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\x00b", "Null characters are not allowed."),
        ("a" * 101, "Ensure this value has at most 100 characters."),
    ],
)
def test_fail_filter_with_a_bad_value(api_client, value, message):
    response = api_client.get(URL, {"model": value})

    assert response.status_code == 400
    assert response.json() == {"model": [message]}


@pytest.fixture
def global_admin(staff_user):
    from integrations.models import ChannelGrant

    ChannelGrant.objects.filter(user=staff_user, channel=None).update(role="admin")
    return staff_user


def test_an_admin_of_every_channel_adds_a_content_type_once(api_client, global_admin):
    first = api_client.post(URL, {"app_label": "shipping", "model": "shipment"}, format="json")
    again = api_client.post(URL, {"app_label": "shipping", "model": "shipment"}, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert first.json() == again.json()
    assert ContentType.objects.filter(app_label="shipping", model="shipment").count() == 1


@pytest.mark.parametrize("role", [None, "operator"])
def test_fail_a_user_who_is_not_an_admin_of_every_channel_cannot_add(anonymous_client, user, role):
    from accounts.services import token_create
    from integrations.models import ChannelGrant

    if role:
        ChannelGrant.objects.create(user=user, channel=None, role=role)
    _, key = token_create(user=user)
    response = anonymous_client.post(
        URL, {"app_label": "a", "model": "b"}, format="json", HTTP_AUTHORIZATION=f"Token {key}"
    )

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only an admin of every channel may add content types.",
        "code": "permission_denied",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"app_label": "Products", "model": "x"}, "app_label"),
        ({"app_label": "ok", "model": "has space"}, "model"),
        ({"app_label": "ok"}, "model"),
    ],
)
def test_fail_add_with_a_bad_name(api_client, global_admin, body, field):
    response = api_client.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()


def test_fail_list_needs_a_token(anonymous_client):
    assert anonymous_client.get(URL).status_code == 401


def test_command_adds_a_content_type():
    out = io.StringIO()

    call_command("add_content_type", "returns.returnrequest", stdout=out)

    content_type = ContentType.objects.get(app_label="returns", model="returnrequest")
    assert str(content_type.pk) in out.getvalue()
