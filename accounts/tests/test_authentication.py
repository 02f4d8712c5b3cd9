"""`Authorization: Token <key>`: every failure answers 401 with `WWW-Authenticate: Token`."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from accounts.models import Token, hash_key
from accounts.services import token_create, token_revoke

pytestmark = pytest.mark.django_db

LOGIN_URL = "/api/v1/auth/login/"


CHANNELS_URL = "/api/v1/channels/"


@pytest.fixture
def url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


def assert_401(response, detail: str, code: str = "authentication_failed") -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": detail, "code": code}


def test_a_valid_token_is_accepted(api_client, url):
    assert api_client.get(url).status_code == 200


def test_the_keyword_is_case_insensitive(anonymous_client, url, token_key):
    response = anonymous_client.get(url, HTTP_AUTHORIZATION=f"token {token_key}")

    assert response.status_code == 200


def test_fail_missing_token(anonymous_client, url):
    assert_401(
        anonymous_client.get(url),
        "Authentication credentials were not provided.",
        "not_authenticated",
    )


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Bearer abc", "Invalid authorization header. Expected 'Token <key>'."),
        ("Basic dXNlcjpwYXNz", "Invalid authorization header. Expected 'Token <key>'."),
        ("Token " + "a" * 500, "Invalid token."),
        ("Token \u00e9\u00e9", "Invalid token."),
    ],
)
def test_fail_malformed_header(anonymous_client, url, header, detail):
    assert_401(anonymous_client.get(url, HTTP_AUTHORIZATION=header), detail)


def test_fail_unknown_token(anonymous_client, url):
    assert_401(anonymous_client.get(url, HTTP_AUTHORIZATION="Token " + "0" * 40), "Invalid token.")


def test_fail_inactive_user(anonymous_client, url, staff_user, token_key):
    staff_user.is_active = False
    staff_user.save()

    assert_401(
        anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {token_key}"),
        "User inactive or deleted.",
    )


def test_fail_revoked_token(anonymous_client, url, staff_user):
    token, key = token_create(user=staff_user)
    token_revoke(token=token)

    assert_401(
        anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {key}"), "Token has been revoked."
    )


def test_fail_expired_token(anonymous_client, url, staff_user):
    token, key = token_create(user=staff_user, ttl=dt.timedelta(seconds=60))
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert_401(anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {key}"), "Token has expired.")


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_fail_every_operation_needs_a_token(anonymous_client, channel, method):
    for path in (
        f"/api/v1/channel/{channel.pk}/failed_integrations/",
        f"/api/v1/channel/{channel.pk}/failed_integrations/1/",
    ):
        response = getattr(anonymous_client, method)(path, {}, format="json")
        if response.status_code == 405:
            continue
        assert response.status_code == 401, (method, path)


def test_fail_unknown_channel_without_a_token_answers_401_not_404(anonymous_client):
    response = anonymous_client.get("/api/v1/channel/999999/failed_integrations/")

    assert response.status_code == 401


def test_tokens_are_stored_hashed(staff_user):
    token, key = token_create(user=staff_user)

    stored = Token.objects.filter(pk=token.pk).values().get()
    assert key not in {str(value) for value in stored.values()}
    assert stored["key_hash"] == hash_key(key)
    assert stored["prefix"] == key[:8]


# --- login ------------------------------------------------------------------------------------


def test_login_answers_a_working_key(anonymous_client, user, url):
    response = anonymous_client.post(
        LOGIN_URL, {"username": "operator", "password": "s3cret-pass"}, format="json"
    )

    assert response.status_code == 200
    assert list(response.json()) == ["key"]
    key = response.json()["key"]
    assert len(key) == 40
    # The key works: the user (on no channel yet) is answered the channels it may see, none.
    answer = anonymous_client.get(CHANNELS_URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert (answer.status_code, answer.json()["results"]) == (200, [])


def test_login_tokens_expire(anonymous_client, user, settings):
    settings.LOGIN_TOKEN_TTL_SECONDS = 3600

    key = anonymous_client.post(
        LOGIN_URL, {"username": "operator", "password": "s3cret-pass"}, format="json"
    ).json()["key"]

    token = Token.objects.get(key_hash=hash_key(key))
    assert token.expires_at is not None
    assert dt.timedelta(seconds=3590) < token.expires_at - timezone.now() <= dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "operator", "password": "wrong"},
        {"username": "nobody", "password": "s3cret-pass"},
    ],
)
def test_fail_login_with_bad_credentials(anonymous_client, user, credentials, caplog):
    response = anonymous_client.post(LOGIN_URL, credentials, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert "failed login" in caplog.text
    assert credentials["password"] not in caplog.text


def test_fail_login_of_an_inactive_user(anonymous_client, user):
    user.is_active = False
    user.save()

    response = anonymous_client.post(
        LOGIN_URL, {"username": "operator", "password": "s3cret-pass"}, format="json"
    )

    assert response.status_code == 400


def test_fail_login_without_fields(anonymous_client):
    response = anonymous_client.post(LOGIN_URL, {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "username": ["This field is required."],
        "password": ["This field is required."],
    }


def test_fail_login_with_wrong_types(anonymous_client):
    response = anonymous_client.post(LOGIN_URL, {"username": ["a"], "password": {}}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"username", "password"}


# --- the command ------------------------------------------------------------------------------


def test_create_token_command_creates_a_user_and_prints_a_working_key(anonymous_client, url):
    out = io.StringIO()

    call_command("create_token", "channel-app", "--create", stdout=out)

    key = out.getvalue().strip()
    user = get_user_model().objects.get(username="channel-app")
    assert not user.has_usable_password()
    assert Token.objects.get(key_hash=hash_key(key)).user == user
    response = anonymous_client.get(CHANNELS_URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert (response.status_code, response.json()["results"]) == (200, [])


def test_create_token_command_for_an_existing_user(user):
    out = io.StringIO()

    call_command("create_token", "operator", "--expires-in", "60", stdout=out)

    token = Token.objects.get(key_hash=hash_key(out.getvalue().strip()))
    assert token.user == user
    assert token.expires_at is not None


def test_fail_create_token_command_for_an_unknown_user():
    with pytest.raises(CommandError, match="pass --create"):
        call_command("create_token", "ghost")


@override_settings(LOGIN_RATE="3/minute")
def test_fail_logins_beyond_the_rate_answer_429_with_retry_after(anonymous_client, user):
    credentials = {"username": "operator", "password": "wrong"}

    answers = [anonymous_client.post(LOGIN_URL, credentials, format="json") for _ in range(4)]

    assert [a.status_code for a in answers] == [400, 400, 400, 429]
    assert answers[3].json()["code"] == "throttled"
    assert 0 < int(answers[3]["Retry-After"]) <= 60
    # Even the right password waits: the address is throttled, not the guess.
    good = {"username": "operator", "password": "s3cret-pass"}
    assert anonymous_client.post(LOGIN_URL, good, format="json").status_code == 429


def test_revoke_token_command(staff_user, anonymous_client, channel):
    _, key = token_create(user=staff_user)
    url = f"/api/v1/channel/{channel.pk}/failed_integrations/"
    assert anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200

    call_command("revoke_token", key[:8], stdout=io.StringIO())

    assert anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
