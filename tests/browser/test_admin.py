"""The admin works in a real browser under the service's Content-Security-Policy: its
scripts (inline forms, autocomplete, actions) run, and the policy blocks nothing it needs."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from integrations.models import Channel, ChannelGrant, FailedIntegration, RetryPolicy

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-admin-passphrase"
SECRET = "admin-typed-secret-7f3e2d"


def log_in(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_a_channel_with_a_policy_and_a_grant_is_added_in_the_browser(
    page, live_server, superuser, django_user_model
):
    django_user_model.objects.create_user(username="colleague")
    log_in(page, live_server.url)

    response = page.goto(f"{live_server.url}/admin/integrations/channel/add/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_name", "Marketplace Z")
    page.fill("#id_retry_endpoint", "https://apps.example.com/retry")
    page.fill("#id_new_signing_secret", SECRET)
    # A row added by the inline formset's script.
    page.click("#retry_policies-group .add-row a")
    page.select_option("select[name='retry_policies-0-reason_type']", "remote")
    page.select_option("select[name='retry_policies-0-backoff']", "exponential")
    # The user picked by the autocomplete widget's script (it asks the admin as you type).
    page.click("#grants-0 .select2-selection")
    page.fill(".select2-search__field", "colleag")
    page.click(".select2-results__option:has-text('colleague')")
    page.select_option("select[name='grants-0-role']", "viewer")
    page.click("input[name='_save']")

    page.wait_for_selector(".messagelist .success")
    channel = Channel.objects.get(name="Marketplace Z")
    assert channel.signing_secret == SECRET
    assert SECRET not in page.content()
    assert RetryPolicy.objects.get(channel=channel).backoff == "exponential"
    assert ChannelGrant.objects.get(channel=channel).user.username == "colleague"
    assert page.violations() == []


def test_an_operator_action_runs_from_the_change_list(page, live_server, superuser, make_failed):
    record = make_failed()
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/admin/integrations/failedintegration/")
    page.check(f"input.action-select[value='{record.pk}']")
    # The actions script counts the selection.
    assert "1 of 1 selected" in page.inner_text(".action-counter")
    page.select_option("select[name='action']", "park")
    page.click("button[name='index']")

    page.wait_for_selector(".messagelist .info, .messagelist .success")
    assert FailedIntegration.objects.get(pk=record.pk).parked is True
    assert page.violations() == []
