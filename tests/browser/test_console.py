"""The console in a real browser: log in, filter through the form, park a record from its page,
preview and confirm a bulk retry (exactly the previewed records change, as the API shows), a
viewer sees no action control, log out; nothing is blocked by the Content-Security-Policy and no
script fails. The overview, the list and a record's page are saved as screenshots
(`SAVE_SCREENSHOTS=1` writes them to docs/screenshots/, which the README shows)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from accounts.services import token_create
from integrations.demo import demo_seed
from integrations.models import ChannelGrant, FailedIntegration

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-operator-passphrase"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("SAVE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)


def make_user(username: str, channel, role: str):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    ChannelGrant.objects.create(user=user, channel=channel, role=role)
    return user


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Channels')")


def test_an_operator_s_day(page, live_server, channel, make_failed, tmp_path):
    demo_seed(channel, count=120)
    make_user("operator1", channel, "operator")
    page.set_viewport_size({"width": 1366, "height": 900})

    log_in(page, live_server.url, "operator1")
    assert page.locator(f"article[data-channel='{channel.pk}']").is_visible()
    screenshot(page, "overview", tmp_path)

    # Filter by reason through the form.
    page.click(f"article[data-channel='{channel.pk}'] h2 a")
    page.check("input[name='reason_type__in'][value='mapping']")
    page.select_option("#f-is_active", "true")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**reason_type__in=mapping**")
    assert page.is_checked("input[name='reason_type__in'][value='mapping']")  # kept in the URL
    expected = FailedIntegration.objects.filter(
        channel=channel, reason_type="mapping", is_active=True
    ).count()
    assert page.get_attribute("[data-count]", "data-count") == str(expected)
    shown = page.locator("tr[data-pk]").count()
    assert shown == min(expected, 25)
    screenshot(page, "failures", tmp_path)

    # Open a record and park it.
    record = (
        FailedIntegration.objects.filter(channel=channel, is_active=True, parked=False)
        .exclude(expiration_date__isnull=False)
        .first()
    )
    page.goto(f"{live_server.url}/console/channels/{channel.pk}/failures/{record.pk}/")
    screenshot(page, "failure", tmp_path)
    page.click("button[name='action'][value='park']")
    page.wait_for_selector("[data-state='parked']")
    assert FailedIntegration.objects.get(pk=record.pk).parked

    # Preview a bulk retry by filter, then confirm it.
    bulk_records = [make_failed(object_id=900_000 + n, log_id=77) for n in range(3)]
    page.goto(f"{live_server.url}/console/channels/{channel.pk}/failures/?log_id=77")
    page.select_option("#act-action", "retry")
    page.click("button[name='scope'][value='all']")
    page.wait_for_selector("#preview")
    assert page.get_attribute("#preview", "data-matched") == "3"
    late = make_failed(object_id=900_010, log_id=77)  # after the preview
    page.click("button[data-confirm]")
    page.wait_for_selector("[data-affected]")

    _, key = token_create(user=get_user_model().objects.get(username="operator1"))
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    listed = api.get(
        f"/api/v1/channel/{channel.pk}/failed_integrations/",
        {"log_id": 77, "limit": 50},
    ).json()["results"]
    retried = {row["pk"] for row in listed if row["next_retry_at"] is not None}
    assert {row["pk"] for row in listed} == {r.pk for r in bulk_records} | {late.pk}
    assert retried == {r.pk for r in bulk_records}  # the previewed ones, not the late one

    # Log out.
    page.click("form.logout button")
    page.wait_for_selector("#id_username")
    assert page.violations() == []


def test_a_viewer_sees_no_action_control(page, live_server, channel, make_failed):
    record = make_failed()
    make_user("viewer1", channel, "viewer")

    log_in(page, live_server.url, "viewer1")
    page.goto(f"{live_server.url}/console/channels/{channel.pk}/failures/")
    assert page.locator("tr[data-pk]").count() == 1
    assert page.locator("#act-action").count() == 0
    assert page.locator("input[name='pk']").count() == 0
    page.goto(f"{live_server.url}/console/channels/{channel.pk}/failures/{record.pk}/")
    assert page.locator("button[name='action']").count() == 0
    assert page.violations() == []
