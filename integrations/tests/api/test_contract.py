"""The contract test: schemathesis runs every operation of the contract file against the running
application and checks every answer against it (status codes, bodies, headers).

The document under test is the contract file extended as the service documents it
(`integrations.api.openapi.build_document`), with one more layer that only steers generation:
the path's channel and the foreign keys of a body are drawn from records that exist, so that
positive cases really create and update instead of stopping at a 400.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType

from accounts.services import token_create
from integrations.api.openapi import (
    CHANNELS_PATH,
    DETAIL_PATH,
    LIST_PATH,
    build_document,
    load_contract,
)
from integrations.models import Channel, ChannelGrant, FailedIntegration, IntegrationAction

CONTRACT_OPERATIONS = {
    ("get", LIST_PATH),
    ("post", LIST_PATH),
    ("get", DETAIL_PATH),
    ("put", DETAIL_PATH),
    ("patch", DETAIL_PATH),
    ("delete", DETAIL_PATH),
}
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
LOGIN_PATH = "/api/v1/auth/login/"
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "40"))
# Record ids a path may name: the 200 records made for the run come first, the ones the run
# creates follow. Small enough that a positive PUT or PATCH often finds a stored record, large
# enough that no record the run creates reaches its end (an id past it is a negative case that
# must answer 404).
ID_WINDOW = 2000
ENDPOINTS = ["", "https://apps.example.com/retry", "http://127.0.0.1:9/retry"]
# What a PUT or PATCH can change (is_active and modified_date also change when a newer report
# supersedes a record, so they do not tell an update).
WRITTEN_FIELDS = (
    "content_type_id",
    "object_id",
    "reason_type",
    "version_date",
    "expiration_date",
    "integration_action_id",
    "log_id",
    "retry_count",
    "max_retry_count",
    "retry_interval",
)


def steer_generation(
    document: dict,
    *,
    channel_id: int,
    content_type_ids: list[int],
    action_ids: list[int],
    record_ids: range,
    usernames: list[str],
) -> dict:
    """Restricts ids in the document to the ones that can exist.

    Each constraint admits every valid value and only those, so that a value outside it (a
    negative case) is one the service must refuse. Record ids: the window `record_ids`, from
    the first record made for the run to above the records the run itself creates; a positive
    case often finds one (or a 404 when it does not exist or a DELETE took it first).
    """
    document = copy.deepcopy(document)
    parameters = document["components"]["parameters"]
    parameters["channel_path"]["schema"]["enum"] = [channel_id]
    parameters["id_path"]["schema"].update(minimum=record_ids.start, maximum=record_ids.stop - 1)
    content_types = {"type": "integer", "enum": content_type_ids}
    for item in document["paths"].values():
        for parameter in (p for op in item.values() for p in op.get("parameters", [])):
            if parameter.get("name") == "content_type":
                parameter["schema"] = content_types
            elif parameter.get("name") == "content_type__in":
                parameter["schema"]["items"] = content_types
    # A key repeated with another body is refused (422) although each request is valid alone:
    # requests here are judged one by one. The header is test_idempotency.py's.
    for item in document["paths"].values():
        for operation in item.values():
            operation["parameters"] = [
                p for p in operation.get("parameters", []) if p.get("name") != "Idempotency-Key"
            ]
    schemas = document["components"]["schemas"]
    for name in ("FailedIntegrationWrite", "FailedIntegrationPartial"):
        properties = schemas[name]["properties"]
        properties["channel"]["enum"] = [channel_id]
        properties["content_type"]["enum"] = content_type_ids
        properties["integration_action"]["enum"] = [*action_ids, None]
    # A channel's settings: endpoints the rules allow (the rules themselves are the channel
    # tests'), and users that exist.
    for name in ("ChannelWrite", "ChannelNew"):
        schemas[name]["properties"]["retry_endpoint"]["enum"] = ENDPOINTS
    schemas["ChannelGrantWrite"]["properties"]["user"]["enum"] = usernames
    # A bulk action with all=true in the query string, its other options in the body only (the
    # query string and the body disagreeing is a 400, and a confirmation is made by a dry run:
    # both are the bulk action tests').
    for item in document["paths"].values():
        operation = item.get("post", {})
        if not any(p.get("name") == "confirm" for p in operation.get("parameters", [])):
            continue
        options = ("all", "dry_run", "confirm", "reset_count")
        operation["parameters"] = [
            p for p in operation["parameters"] if p.get("name") not in options
        ] + [{"name": "all", "in": "query", "required": True, "schema": {"enum": [True]}}]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        body["properties"] = {
            name: schema
            for name, schema in body["properties"].items()
            if name not in ("all", "confirm")
        }
    return document


def test_the_contract_lists_the_six_operations():
    contract = load_contract()
    operations = {(method, path) for path, item in contract["paths"].items() for method in item}
    assert operations == CONTRACT_OPERATIONS


def test_the_served_document_keeps_every_contract_answer(api_client):
    """What the service documents is additive: every status and schema of the contract stays."""
    contract = load_contract()
    served = api_client.get("/api/v1/openapi.json").json()
    for path, item in contract["paths"].items():
        for method, operation in item.items():
            served_operation = served["paths"][path][method]
            for status in operation["responses"]:
                assert status in served_operation["responses"], (method, path, status)
    for name, prop in contract["components"]["schemas"]["FailedIntegration"]["properties"].items():
        served_prop = served["components"]["schemas"]["FailedIntegration"]["properties"][name]
        assert {k: served_prop[k] for k in prop} == prop, name


def test_the_served_document_lists_a_404_where_one_is_answered(api_client):
    """A channel or record not found, or a page past the last: never for the login or the
    content type's creation, which answer no 404."""
    served = api_client.get("/api/v1/openapi.json").json()
    listed = {
        (method, path): "404" in operation["responses"]
        for path, item in served["paths"].items()
        for method, operation in item.items()
    }
    assert listed.pop(("post", LOGIN_PATH)) is False
    assert listed.pop(("post", "/api/v1/content_types/")) is False
    assert listed.pop(("get", "/api/v1/content_types/")) is True  # a page past the last
    assert listed.pop(("post", CHANNELS_PATH)) is False
    assert listed.pop(("get", CHANNELS_PATH)) is True
    assert listed.pop(("get", "/api/v1/audit/")) is True
    assert all(
        path.startswith(("/api/v1/channel/{channel_id}/", "/api/v1/channels/{channel_id}/"))
        for _, path in listed
    )
    assert all(listed.values()), [key for key, has_404 in listed.items() if not has_404]


def run_schemathesis(schema_path: Path, base_url: str, key: str, *args: str) -> str:
    """Runs schemathesis on every operation of `schema_path`; answers its report on success."""
    command = [
        str(SCHEMATHESIS),
        "run",
        str(schema_path),
        "--url",
        base_url,
        "--header",
        f"Authorization: Token {key}",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--suppress-health-check",
        "all",
        *args,
    ]
    if "--phases" not in args:
        command += ["--phases", "examples,coverage,fuzzing,stateful"]
    # Run from the schema's folder, so that schemathesis keeps its cache there, not in the tree.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, cwd=schema_path.parent
    )
    output = result.stdout + result.stderr
    if os.environ.get("CONTRACT_LOG"):
        Path(os.environ["CONTRACT_LOG"]).write_text(output)
    assert result.returncode == 0, output
    return output


@pytest.fixture
def steered_schema(
    live_server, channel, product_type, user, tmp_path, make_failed, django_user_model
):
    """Writes the steered document restricted to some paths; answers (path, key, records)."""
    # An admin of the channel, not of every channel: adding content types answers 403 during
    # the run, so the set of valid content types stays the one the document lists. Grants are
    # given to its colleagues (nobody changes their own).
    _, key = token_create(user=user, name="contract")
    ChannelGrant.objects.create(user=user, channel=channel, role="admin")
    colleagues = [
        django_user_model.objects.create_user(username=f"colleague{n}").get_username()
        for n in (1, 2)
    ]
    actions = [
        IntegrationAction.objects.create(channel=channel, content_type=product_type, object_id=n)
        for n in (1, 2)
    ]
    records = [make_failed(object_id=n) for n in range(1, 201)]

    def write(paths, id_window: int = ID_WINDOW) -> tuple[Path, int]:
        document = steer_generation(
            build_document(),
            channel_id=channel.pk,
            content_type_ids=list(ContentType.objects.values_list("pk", flat=True)),
            action_ids=[action.pk for action in actions],
            record_ids=range(records[0].pk, records[0].pk + id_window),
            usernames=colleagues,
        )
        selected = {**document, "paths": {p: document["paths"][p] for p in paths}}
        schema_path = tmp_path / "openapi.json"
        schema_path.write_text(json.dumps(selected))
        return schema_path, sum(len(item) for item in selected["paths"].values())

    return write, key, records


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_failure(live_server, channel, steered_schema):
    """The six operations of the contract, every phase (examples, coverage, fuzzing, stateful)."""
    write, key, records = steered_schema
    schema_path, operations = write([LIST_PATH, DETAIL_PATH])

    output = run_schemathesis(
        schema_path, live_server.url, key, "--exclude-checks", "object_level_authorization"
    )

    assert operations == 6
    assert f"Selected: {operations}/{operations}" in output, output
    assert f"Tested: {operations}" in output, output
    # Positive cases really wrote: records were created, and existing ones updated.
    before = {record.pk: [getattr(record, name) for name in WRITTEN_FIELDS] for record in records}
    created = FailedIntegration.objects.filter(channel=channel).exclude(pk__in=before)
    assert created.exists(), output[-3000:]
    assert max(created.values_list("pk", flat=True)) < records[0].pk + ID_WINDOW
    stored = FailedIntegration.objects.filter(pk__in=before).values_list("pk", *WRITTEN_FIELDS)
    updated = [pk for pk, *values in stored if values != before[pk]]
    assert updated, output[-3000:]


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_failure_in_what_the_service_adds(
    live_server, channel, steered_schema
):
    """Group counts, bulk intake, operator actions, attempts and content types: fuzzing and
    stateful phases (the coverage phase's walk over every combination of the list's filters
    is done once, on the list above)."""
    write, key, _ = steered_schema
    added = [
        path
        for path in build_document()["paths"]
        if path not in (LIST_PATH, DETAIL_PATH, LOGIN_PATH)
    ]
    # Bulk intake creates up to a thousand records a request: ids stay open far above.
    schema_path, operations = write(added, id_window=1_000_000)

    output = run_schemathesis(
        schema_path,
        live_server.url,
        key,
        "--exclude-checks",
        "object_level_authorization",
        "--phases",
        "examples,fuzzing,stateful",
    )

    assert f"Tested: {operations}" in output, output
    # Positive cases of the channel's settings really wrote.
    assert Channel.objects.get(pk=channel.pk).modified_date > channel.modified_date, output[-3000:]


@pytest.mark.django_db(transaction=True)
def test_schemathesis_login(live_server, user, tmp_path):
    """The login endpoint, fuzzed on its own: generated credentials are wrong credentials, which
    it rightly answers 400, so "a schema-valid request is accepted" cannot hold there."""
    _, key = token_create(user=user, name="contract")
    document = build_document()
    document["paths"] = {LOGIN_PATH: document["paths"][LOGIN_PATH]}
    schema_path = tmp_path / "openapi.json"
    schema_path.write_text(json.dumps(document))

    output = run_schemathesis(
        schema_path,
        live_server.url,
        key,
        "--exclude-checks",
        "object_level_authorization,positive_data_acceptance",
    )

    assert "Tested: 1" in output, output
