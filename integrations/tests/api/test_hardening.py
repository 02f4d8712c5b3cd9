"""Holes a security review found, each closed on both databases and both paths."""

from __future__ import annotations

import logging

import pytest

from integrations.models import FailedIntegration

pytestmark = pytest.mark.django_db

EVIL_HOST = "evil.example"


@pytest.fixture
def payload(channel, product_type) -> dict:
    return {
        "version_date": "2025-06-27T08:38:26.936Z",
        "reason_type": "remote",
        "content_type": product_type.pk,
        "object_id": 7,
    }


def list_url(channel_id: int) -> str:
    return f"/api/v1/channel/{channel_id}/failed_integrations/"


@pytest.mark.parametrize("method", ["GET list", "GET", "PATCH", "PUT", "POST"])
def test_a_host_the_service_does_not_serve_is_refused_and_nothing_changes(
    api_client, channel, make_failed, payload, method, caplog
):
    """On PostgreSQL the fast path answers these requests; it must refuse the Host as the
    regular path does (a bad Host poisons the links of a page, for one)."""
    record = make_failed(object_id=7, retry_count=0)
    before = FailedIntegration.objects.values().get(pk=record.pk)
    detail = f"{list_url(channel.pk)}{record.pk}/"
    requests = {
        "GET list": lambda: api_client.get(list_url(channel.pk), HTTP_HOST=EVIL_HOST),
        "GET": lambda: api_client.get(detail, HTTP_HOST=EVIL_HOST),
        "PATCH": lambda: api_client.patch(
            detail, {"retry_count": 3}, format="json", HTTP_HOST=EVIL_HOST
        ),
        "PUT": lambda: api_client.put(
            detail, {**payload, "retry_count": 3}, format="json", HTTP_HOST=EVIL_HOST
        ),
        "POST": lambda: api_client.post(
            list_url(channel.pk), {**payload, "object_id": 8}, format="json", HTTP_HOST=EVIL_HOST
        ),
    }

    with caplog.at_level(logging.WARNING):
        response = requests[method]()

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert FailedIntegration.objects.values().get(pk=record.pk) == before
    assert FailedIntegration.objects.filter(channel=channel).count() == 1
    # One warning line, not an error with a traceback.
    logged = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert logged
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in logged)


def test_a_failed_login_logs_a_bounded_escaped_username(anonymous_client, staff_user, caplog):
    """A password typed into the username field must not reach the log whole, nor may a
    username forge log lines."""
    typed = "Correct-Horse-Battery-Staple-1234567890-and-more-text-to-pass-the-bound\nFORGED"

    with caplog.at_level(logging.WARNING):
        response = anonymous_client.post(
            "/api/v1/auth/login/", {"username": typed, "password": "wrong"}, format="json"
        )

    assert response.status_code == 400
    (logged,) = [r for r in caplog.records if "failed login" in r.getMessage()]
    message = logged.getMessage()
    assert "\n" not in message
    assert typed not in message and "FORGED" not in message
    assert "Correct-Horse" in message  # enough to tell attempts apart


def test_answers_are_not_kept_by_caches(api_client, anonymous_client, channel, make_failed):
    """Records and tokens must not stay in a browser's or a proxy's cache (both paths)."""
    record = make_failed(object_id=9)
    answers = [
        api_client.get(list_url(channel.pk)),
        api_client.get(f"{list_url(channel.pk)}{record.pk}/"),
        api_client.get(list_url(channel.pk) + "?page=99"),  # a 404
        anonymous_client.post(
            "/api/v1/auth/login/", {"username": "nobody", "password": "x"}, format="json"
        ),
    ]

    assert [a.status_code for a in answers] == [200, 200, 404, 400]
    assert all("no-store" in a["Cache-Control"] for a in answers)


def test_the_admin_pages_carry_a_content_security_policy(client, staff_user):
    login_page = client.get("/admin/login/")
    client.force_login(staff_user)

    pages = [login_page, client.get("/admin/")]

    for page in pages:
        assert page.status_code == 200
        policy = page["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";")[0]


@pytest.mark.parametrize(("role", "shown"), [("viewer", False), ("operator", True)])
def test_a_channel_app_s_error_text_is_shown_to_operators_not_to_viewers(
    anonymous_client, user, channel, make_failed, role, shown
):
    """Both paths: on PostgreSQL the list and the record are the fast path's statements."""
    from accounts.services import token_create
    from integrations.models import ChannelGrant, RetryAttempt

    text = "HTTP 500: db_password=hunter2"
    record = make_failed(object_id=11, last_error=text)
    RetryAttempt.objects.create(
        failed_integration=record,
        number=1,
        idempotency_key="k1",
        error=text,
        worker="w",
        started_at=record.created_date,
    )
    ChannelGrant.objects.create(user=user, channel=channel, role=role)
    _, key = token_create(user=user)
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    detail = f"{list_url(channel.pk)}{record.pk}/"

    listed = anonymous_client.get(list_url(channel.pk)).json()["results"][0]["last_error"]
    one = anonymous_client.get(detail).json()["last_error"]
    attempt = anonymous_client.get(f"{detail}attempts/").json()["results"][0]["error"]

    assert [listed, one, attempt] == ([text] * 3 if shown else ["", "", ""])
