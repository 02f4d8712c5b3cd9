"""A token's life: its last use is known, the admin cannot bring it back or move it, and a new
password ends it."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Token
from accounts.services import token_create
from accounts.usage import forget_uses

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_memory():
    forget_uses()
    yield
    forget_uses()


def list_url(channel) -> str:
    return f"/api/v1/channel/{channel.pk}/failed_integrations/"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_token_s_last_use_is_recorded_to_the_minute(
    anonymous_client, staff_user, channel, product_type, method
):
    """Both paths (on PostgreSQL a GET and a report are the fast path's)."""
    token, key = token_create(user=staff_user, name="app")
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    def use():
        if method == "GET":
            response = anonymous_client.get(list_url(channel))
        else:
            response = anonymous_client.post(
                list_url(channel),
                {
                    "version_date": "2025-06-27T08:38:26.936Z",
                    "reason_type": "remote",
                    "content_type": product_type.pk,
                    "object_id": 1,
                },
                format="json",
            )
        assert response.status_code in (200, 201)

    assert token.last_used_at is None
    before = timezone.now()
    use()
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and first >= before

    with CaptureQueriesContext(connection) as queries:
        use()  # within the minute: not written again, not even tried
    token.refresh_from_db()
    assert token.last_used_at == first
    assert not [q for q in queries if 'UPDATE "accounts_token"' in q["sql"]]

    # A minute later (another process's memory, or this one's, forgotten), written again.
    Token.objects.filter(pk=token.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    forget_uses()
    use()
    token.refresh_from_db()
    assert token.last_used_at > first - dt.timedelta(minutes=2)
    assert token.last_used_at >= before


def test_a_refused_token_is_not_recorded_as_used(anonymous_client, staff_user, channel):
    token, key = token_create(user=staff_user)
    Token.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert anonymous_client.get(list_url(channel)).status_code == 401
    token.refresh_from_db()
    assert token.last_used_at is None


@pytest.fixture
def superuser_client(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "root-pass-1")
    client.force_login(admin)
    return client


def test_the_admin_cannot_unrevoke_extend_or_move_a_token(superuser_client, staff_user, user):
    token, _ = token_create(user=staff_user, name="app")
    revoked = timezone.now() - dt.timedelta(hours=1)
    Token.objects.filter(pk=token.pk).update(revoked_at=revoked)
    url = f"/admin/accounts/token/{token.pk}/change/"

    page = superuser_client.get(url)
    response = superuser_client.post(
        url, {"user": user.pk, "name": "renamed", "revoked_at": "", "expires_at": "2999-01-01"}
    )

    assert page.status_code == 200
    for name in ("user", "name", "revoked_at", "expires_at"):
        assert f'name="{name}"' not in page.content.decode()
    assert response.status_code in (200, 302)
    token.refresh_from_db()
    assert (token.user_id, token.name, token.revoked_at, token.expires_at) == (
        staff_user.pk,
        "app",
        revoked,
        None,
    )


def test_the_admin_revokes_tokens(superuser_client, staff_user):
    token, _ = token_create(user=staff_user)

    response = superuser_client.post(
        "/admin/accounts/token/", {"action": "revoke", "_selected_action": [token.pk]}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_password_change_revokes_the_user_s_tokens(api_client, staff_user, user, channel):
    other, _ = token_create(user=user)
    assert api_client.get(list_url(channel)).status_code == 200

    staff_user.set_password("a-new-password-42")
    staff_user.save()

    response = api_client.get(list_url(channel))
    assert response.status_code == 401
    assert response.json()["detail"] == "Token has been revoked."
    assert Token.objects.filter(user=staff_user, revoked_at__isnull=True).count() == 0
    other.refresh_from_db()
    assert other.revoked_at is None  # another user's are left alone


def test_changepassword_in_the_admin_revokes_the_user_s_tokens(superuser_client, staff_user):
    token, _ = token_create(user=staff_user)

    response = superuser_client.post(
        f"/admin/auth/user/{staff_user.pk}/password/",
        {"password1": "Another-pass-9876", "password2": "Another-pass-9876"},
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_login_that_rehashes_the_same_password_revokes_nothing(anonymous_client, staff_user):
    token, _ = token_create(user=staff_user)
    # As a login does when the hasher's settings changed: the same password, a new hash.
    staff_user.set_password("s3cret-pass")
    staff_user.save(update_fields=["password"])
    other_save = get_user_model().objects.get(pk=staff_user.pk)
    other_save.first_name = "Ada"
    other_save.save()

    response = anonymous_client.post(
        "/api/v1/auth/login/", {"username": "admin", "password": "s3cret-pass"}, format="json"
    )

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is None


def test_manage_tokens_lists_them(staff_user, user):
    used, _ = token_create(user=staff_user, name="channel app")
    Token.objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    revoked, _ = token_create(user=user, name="old")
    Token.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    out = io.StringIO()

    call_command("tokens", stdout=out)
    listed = out.getvalue().splitlines()
    call_command("tokens", "--active", stdout=(active := io.StringIO()))

    assert listed[0].split() == [
        "prefix",
        "user",
        "name",
        "created",
        "last",
        "used",
        "expires",
        "revoked",
    ]
    assert any(used.prefix in line and "channel app" in line for line in listed)
    assert any(revoked.prefix in line and "old" in line for line in listed)
    assert revoked.prefix not in active.getvalue() and used.prefix in active.getvalue()
