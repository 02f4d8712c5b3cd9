"""The interactive API docs in a real browser under the service's Content-Security-Policy:
every operation of the contract is listed, and a developer can authorize with a token and try
one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accounts.services import token_create

pytestmark = pytest.mark.django_db(transaction=True)

CONTRACT = (
    Path(__file__).resolve().parents[2]
    / "integrations"
    / "api"
    / "contract"
    / "failed-integrations.openapi.json"
)
METHODS = ("get", "post", "put", "patch", "delete")


def test_every_operation_of_the_contract_is_listed_and_can_be_tried(
    page, live_server, staff_user, channel, make_failed
):
    make_failed(object_id=4242)
    key = token_create(user=staff_user, name="docs")[1]
    contract = json.loads(CONTRACT.read_text())
    operations = {
        (method.upper(), path)
        for path, item in contract["paths"].items()
        for method in METHODS
        if method in item
    }

    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".opblock")
    listed = set()
    for block in page.query_selector_all(".opblock"):
        method = block.query_selector(".opblock-summary-method").inner_text().strip()
        path = block.query_selector(".opblock-summary-path").get_attribute("data-path")
        listed.add((method, path))

    assert operations <= listed, operations - listed
    assert page.violations() == []

    # Authorize with the token scheme, then try the list of the channel.
    page.click(".btn.authorize")
    page.fill(".auth-container input", f"Token {key}")
    page.click(".auth-btn-wrapper .btn.modal-btn.auth.authorize")
    page.click(".btn-done")
    list_path = next(
        path
        for method, path in operations
        if method == "GET" and "{" in path and path.endswith("failed_integrations/")
    )
    block = page.locator(f'.opblock-get:has(.opblock-summary-path[data-path="{list_path}"])')
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    block.locator('input[placeholder="channel_id"]').fill(str(channel.pk))
    block.locator(".execute").click()
    response = block.locator(".live-responses-table tr.response .response-col_status")
    response.first.wait_for()
    assert response.first.inner_text().strip() == "200"
    assert "4242" in block.locator(".live-responses-table .highlight-code").inner_text()
    assert page.violations() == []
