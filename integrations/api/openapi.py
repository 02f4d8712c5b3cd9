"""The OpenAPI document the service serves: the contract, with what the service adds.

The contract (``contract/failed-integrations.openapi.json``, the original API's six operations)
is loaded as it is and only extended:

* the error answers the original API gives but its page does not list (400, 413, 415, 503);
* the storage bounds of integers (64-bit ids, 32-bit counts) and the read-only timestamps;
* what a write really requires: `channel` may be left out (it is the URL's), and PATCH takes
  any subset of the fields;
* the 200 bodies of PUT and PATCH (the whole updated object);
* the list's filters and sorting, the group counts and bulk intake, and the endpoints the service
  adds (login, content types, channels' settings and grants).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import django_filters
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import PositiveIntegerField
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from common.fields import INT32_MAX
from integrations.api.urls import RECORD_ACTIONS
from integrations.choices import AttemptOutcome, Backoff, ChannelType, ReasonType, Role, State
from integrations.lifecycle.transitions import OPERATOR_ACTIONS as ACTIONS
from integrations.models import MIN_SECRET_LENGTH, Channel, ChannelDispatch, RetryPolicy
from integrations.operations.bulk import CANARY_MAX
from integrations.reads.filtersets import (
    MAX_LIST_ITEMS,
    SORT_FIELDS,
    BooleanFilter,
    ContentTypeFilter,
    DateTimeFilter,
    FailedIntegrationFilterSet,
    IntegerFilter,
    SortFilter,
)
from integrations.reads.selectors import GROUP_KEYS
from integrations.records import idempotency
from integrations.records.registry import (
    ANSWERED,
    BOOL,
    CHOICE,
    DATETIME,
    INT,
    STATE,
    TEXT,
    RecordField,
)

CONTRACT_PATH = Path(__file__).resolve().parent / "contract" / "failed-integrations.openapi.json"
LIST_PATH = "/api/v1/channel/{channel_id}/failed_integrations/"
DETAIL_PATH = "/api/v1/channel/{channel_id}/failed_integrations/{id}/"
STATS_PATH = "/api/v1/channel/{channel_id}/failed_integrations/stats/"
BULK_PATH = "/api/v1/channel/{channel_id}/failed_integrations/bulk/"
ATTEMPTS_PATH = "/api/v1/channel/{channel_id}/failed_integrations/{id}/attempts/"
OPERATIONS_PATH = "/api/v1/channel/{channel_id}/operations/"
AUDIT_PATH = "/api/v1/audit/"
BODY_METHODS = {"post", "put", "patch"}

_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail"],
}
_FIELD_ERRORS = {
    "type": "object",
    "description": "Field-keyed messages; `non_field_errors` for cross-field problems.",
}


def _error_response(description: str, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_RESPONSES: dict[str, dict[str, Any]] = {
    "400": _error_response(
        "Invalid input: a field-keyed object naming each bad field or parameter.",
        {"anyOf": [_FIELD_ERRORS, _ERROR]},
    ),
    "413": _error_response("The request body is larger than the service accepts."),
    "415": _error_response("The request body is not JSON (Content-Type)."),
    "503": _error_response("The database is unavailable; retry after `Retry-After` seconds."),
}

# A report's Idempotency-Key (`records/idempotency.py`), on the two reports.
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes the report safe to send again (after a timeout, a lost connection or a 503): "
        "within `IDEMPOTENCY_KEY_HOURS` (24 by default), a repeat with the same key and the same "
        "JSON body answers the first answer again (201, with `Idempotent-Replayed: true`) and "
        "writes nothing; the same key with another body, or on the other report's route, "
        "answers 422. Keys belong to the token's user and the channel; a refused report (4xx) "
        "keeps none."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_LENGTH,
        "pattern": "^[ -~]+$",
    },
}
IDEMPOTENCY_RESPONSES: dict[str, dict[str, Any]] = {
    "409": _error_response(
        "The records of this Idempotency-Key have since been deleted, or concurrent requests "
        "with it did not settle; send it again."
    ),
    "422": _error_response(
        "This Idempotency-Key was used with another request (code `idempotency_key_reused`)."
    ),
}


def _idempotent(operation: dict[str, Any]) -> None:
    operation.setdefault("parameters", []).append(copy.deepcopy(IDEMPOTENCY_KEY_PARAMETER))
    operation["responses"].update(copy.deepcopy(IDEMPOTENCY_RESPONSES))
    operation["responses"]["201"].setdefault("headers", {})[idempotency.REPLAYED_HEADER] = {
        "description": "`true` when this is the first answer of the Idempotency-Key, again.",
        "schema": {"type": "string", "enum": ["true"]},
    }


_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    INT: {"type": "integer"},
    BOOL: {"type": "boolean"},
    DATETIME: {"type": "string", "format": "date-time"},
    CHOICE: {"type": "string"},
    TEXT: {"type": "string"},
    STATE: {"type": "string", "enum": list(State.values)},
}


def field_schema(field: RecordField) -> dict[str, Any]:
    """A registry field's schema: its type, bounds and nullability; read-only unless a channel
    app writes it."""
    schema = dict(_KIND_SCHEMAS[field.kind])
    if field.bounds is not None:
        low, high = field.bounds
        schema |= {"format": "int32" if high <= INT32_MAX else "int64"}
        schema |= {"minimum": low, "maximum": high}
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.nullable:
        schema["nullable"] = True
    if not field.writable:
        schema["readOnly"] = True
    if field.description:
        schema["description"] = field.description
    return schema


def _record_schema(record: dict[str, Any]) -> None:
    """The contract's record schema with the storage's bounds of its integers, and the fields
    the service adds to every answer."""
    properties = record["properties"]
    for field in ANSWERED:
        schema = field_schema(field)
        if field.name not in properties:
            properties[field.name] = schema
        elif field.bounds is not None:
            properties[field.name].update(
                {key: schema[key] for key in ("format", "minimum", "maximum")}
            )


LOGIN_PATH = {
    "post": {
        "summary": "Log in",
        "description": "Answers a token for `Authorization: Token <key>`.",
        "tags": ["Auth"],
        "security": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "username": {"type": "string", "minLength": 1, "maxLength": 150},
                            "password": {"type": "string", "minLength": 1, "maxLength": 4096},
                        },
                        "required": ["username", "password"],
                    }
                }
            },
        },
        "responses": {
            "429": _error_response("Too many attempts from this address; see Retry-After."),
            "200": {
                "description": "A new token",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"key": {"type": "string"}},
                            "required": ["key"],
                        }
                    }
                },
            },
        },
    }
}

CONTENT_TYPE_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "app_label": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 100},
        "model": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 100},
    },
    "required": ["app_label", "model"],
}

CONTENT_TYPES_PATH = {
    "get": {
        "summary": "List content types",
        "description": "The kinds of objects a failure can be reported for.",
        "tags": ["ContentTypes"],
        "parameters": [
            {"$ref": "#/components/parameters/page"},
            {"$ref": "#/components/parameters/limit"},
            {
                "name": "app_label",
                "in": "query",
                "allowEmptyValue": True,
                "schema": {"type": "string", "maxLength": 100},
            },
            {
                "name": "model",
                "in": "query",
                "allowEmptyValue": True,
                "schema": {"type": "string", "maxLength": 100},
            },
        ],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "count": {"type": "integer"},
                                "next": {"type": "string", "nullable": True},
                                "previous": {"type": "string", "nullable": True},
                                "results": {"type": "array", "items": CONTENT_TYPE_SCHEMA},
                            },
                        }
                    }
                },
            },
            "401": {"$ref": "#/components/responses/401"},
        },
    },
    "post": {
        "summary": "Add a content type (an admin of every channel)",
        "tags": ["ContentTypes"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CONTENT_TYPE_SCHEMA}},
        },
        "responses": {
            "201": {
                "description": "Created",
                "content": {"application/json": {"schema": CONTENT_TYPE_SCHEMA}},
            },
            "200": {
                "description": "It existed already",
                "content": {"application/json": {"schema": CONTENT_TYPE_SCHEMA}},
            },
            "401": {"$ref": "#/components/responses/401"},
            "403": _error_response("Only an admin of every channel may add content types."),
        },
    },
}


def _filter_schema(flt) -> dict[str, Any]:
    if isinstance(flt, django_filters.BaseInFilter):
        return {"type": "array", "items": _value_schema(flt), "maxItems": MAX_LIST_ITEMS}
    return _value_schema(flt)


def _value_schema(flt) -> dict[str, Any]:
    """The schema of one value of `flt` (an `__in` filter is an instance of its value's)."""
    if isinstance(flt, SortFilter):
        names = [name for field in SORT_FIELDS for name in (field, f"-{field}")]
        return {"type": "array", "items": {"type": "string", "enum": names}, "maxItems": 6}
    if isinstance(flt, IntegerFilter):
        bounds = {"minimum": flt.extra.get("min_value"), "maximum": flt.extra.get("max_value")}
        return {"type": "integer", **{k: v for k, v in bounds.items() if v is not None}}
    if isinstance(flt, DateTimeFilter):
        return {"type": "string", "format": "date-time"}
    if isinstance(flt, BooleanFilter):
        return {"type": "boolean"}
    if isinstance(flt, ContentTypeFilter):
        return {
            "type": "string",
            "pattern": r"^([0-9]{1,18}|[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)$",
            "description": "A content type's id or app_label.model, e.g. products.product.",
        }
    if isinstance(flt, django_filters.ChoiceFilter):
        return {"type": "string", "enum": [value for value, _ in flt.extra["choices"]]}
    raise TypeError(f"No schema for filter {flt!r}")


def filter_parameters() -> list[dict[str, Any]]:
    """The list's query parameters, from the FilterSet (the one place they are declared)."""
    parameters = []
    for name, flt in FailedIntegrationFilterSet.base_filters.items():
        schema = _filter_schema(flt)
        parameter = {
            "name": name,
            "in": "query",
            "required": False,
            "allowEmptyValue": True,
            "schema": schema,
        }
        if schema["type"] == "array":
            parameter |= {"style": "form", "explode": False}
        parameters.append(parameter)
    return parameters


def load_contract() -> dict[str, Any]:
    return json.loads(CONTRACT_PATH.read_text())


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _stats_path() -> dict[str, Any]:
    group_keys = {"type": "string", "enum": list(GROUP_KEYS)}
    row = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "reason_type": {"type": "string"},
            "content_type": {"type": "integer"},
            "content_type_name": {"type": "string"},
            "is_active": {"type": "boolean"},
            "exhausted": {"type": "boolean"},
            "expired": {"type": "boolean"},
        },
        "required": ["count"],
    }
    body = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "group_by": {"type": "array", "items": group_keys},
            "results": {"type": "array", "items": row},
        },
        "required": ["count", "group_by", "results"],
    }
    return {
        "get": {
            "summary": "Count failed integrations per group",
            "description": "One row per group of the filtered records, largest first.",
            "tags": ["SalesChannelFailedIntegrations"],
            "parameters": [
                {"$ref": "#/components/parameters/channel_path"},
                {
                    "name": "group_by",
                    "in": "query",
                    "required": False,
                    "allowEmptyValue": True,
                    "style": "form",
                    "explode": False,
                    "schema": {
                        "type": "array",
                        "items": group_keys,
                        "uniqueItems": True,
                        "minItems": 1,
                    },
                    "description": "Default: reason_type.",
                },
                *filter_parameters(),
            ],
            "responses": {
                "200": _json(body, "Counts per group"),
                "401": {"$ref": "#/components/responses/401"},
                "404": {"$ref": "#/components/responses/404"},
            },
        }
    }


def _bulk_path() -> dict[str, Any]:
    created = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "results": {"type": "array", "items": _schema_ref("FailedIntegration")},
        },
        "required": ["count", "results"],
    }
    return {
        "post": {
            "summary": "Report a batch of failed integrations",
            "description": (
                "All items are recorded, or none: a 400 lists each invalid item's index and fields."
            ),
            "tags": ["SalesChannelFailedIntegrations"],
            "parameters": [{"$ref": "#/components/parameters/channel_path"}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": _schema_ref("FailedIntegrationWrite"),
                            "minItems": 1,
                            "maxItems": settings.BULK_MAX_ITEMS,
                        }
                    }
                },
            },
            "responses": {
                "201": _json(created, "Every item recorded"),
                "401": {"$ref": "#/components/responses/401"},
                "404": {"$ref": "#/components/responses/404"},
            },
        }
    }


ACTION_HELP = {
    "retry": "due now, even exhausted or mapping records; reset_count sets retry_count to 0",
    "park": "not retried on its own until unparked",
    "unpark": "due now if its policy retries it on its own",
    "deactivate": "resolved: no longer retried",
}


OPERATION_SCHEMA = {
    "type": "object",
    "description": "A bulk action that acted or is acting (poll its `url` for progress).",
    "properties": {
        "id": {"type": "integer"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "status": {"type": "string", "enum": ["canary", "queued", "running", "done", "failed"]},
        "filters": {"type": "string", "description": "The filters, as a query string."},
        "reset_count": {"type": "boolean"},
        "canary": {
            "type": "object",
            "nullable": True,
            "description": (
                "A canary retry: `size` records retried first, and how many of them succeeded, "
                "failed or are waiting; the rest go once all succeeded (status `canary` until "
                "then; `failed` if one failed, the rest left as they were)."
            ),
            "properties": {
                "size": {"type": "integer"},
                "started_at": {"type": "string", "format": "date-time", "nullable": True},
                "succeeded": {"type": "integer"},
                "failed": {"type": "integer"},
                "waiting": {"type": "integer"},
            },
        },
        "total": {"type": "integer", "description": "Records matched when it was asked for."},
        "processed": {"type": "integer"},
        "affected": {"type": "integer"},
        "no_longer_matched": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time", "nullable": True},
        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
        "error": {"type": "string"},
        "user": {"type": "string", "nullable": True},
        "url": {"type": "string"},
    },
    "required": ["id", "action", "status", "total", "processed", "affected", "url"],
}


def _action_options(action: str, *, bulk: bool) -> dict[str, dict[str, Any]]:
    """The options an action takes (in the body; a bulk action's in the query string too)."""
    options: dict[str, dict[str, Any]] = {}
    if bulk:
        options["dry_run"] = {
            "type": "boolean",
            "default": False,
            "description": "Preview: the counts, a sample and a `confirm` token; nothing acts.",
        }
        options["all"] = {
            "type": "boolean",
            "default": False,
            "description": "Needed to act with no filter, on every record of the channel.",
        }
        options["confirm"] = {
            "type": "string",
            "description": "A dry run's token: act on the records it previewed, and only those.",
        }
    if action == "retry":
        options["reset_count"] = {
            "type": "boolean",
            "default": False,
            "description": "Set retry_count to 0.",
        }
    if action == "retry" and bulk:
        options["canary"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": CANARY_MAX,
            "description": (
                "Retry this many of the records first, and the rest only once they all "
                "succeeded (at the channel's rate); if one fails, the rest stay as they were."
            ),
        }
    return options


def _action_path(action: str, *, bulk: bool) -> dict[str, Any]:
    options = _action_options(action, bulk=bulk)
    body = {"type": "object", "properties": options, "additionalProperties": False}
    parameters = [{"$ref": "#/components/parameters/channel_path"}]
    responses: dict[str, Any] = {}
    if bulk:
        parameters += [p for p in filter_parameters() if p["name"] not in ("channel", "sort")]
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in options.items()
        ]
        result = {
            "type": "object",
            "properties": {
                "action": {"type": "string"},
                "matched": {"type": "integer"},
                "affected": {"type": "integer"},
                "dry_run": {"type": "boolean"},
                "no_longer_matched": {
                    "type": "integer",
                    "description": "Records matched when asked for that no longer match.",
                },
                "sample": {"type": "array", "items": {"type": "integer"}, "maxItems": 10},
                "confirm": {"type": "string"},
                "confirm_expires_at": {"type": "string", "format": "date-time"},
                "operation": OPERATION_SCHEMA,
            },
            "required": ["action", "matched", "affected", "dry_run"],
        }
        queued = {
            "type": "object",
            "properties": {
                "action": {"type": "string"},
                "matched": {"type": "integer"},
                "dry_run": {"type": "boolean"},
                "operation": OPERATION_SCHEMA,
            },
            "required": ["action", "matched", "dry_run", "operation"],
        }
        summary = f"{action.capitalize()} every active record the filters match, and only those"
        responses["202"] = _json(queued, "Many records: queued for the workers (see Location)")
    else:
        parameters.append({"$ref": "#/components/parameters/id_path"})
        result = _schema_ref("FailedIntegration")
        summary = f"{action.capitalize()} one record"
    responses |= {
        "200": _json(result, "Done (or previewed)" if bulk else "The record afterwards"),
        "401": {"$ref": "#/components/responses/401"},
        "404": {"$ref": "#/components/responses/404"},
    }
    if not bulk:
        responses["409"] = _error_response("The record is not active.")
    description = f"{action}: {ACTION_HELP[action]}."
    if bulk:
        description += (
            " An unknown parameter or body key, a list's parameter (page, limit, sort, cursor) "
            "or a filter in the body answers 400 naming it, and so does an action with no "
            "filter unless all=true: nothing acts."
        )
    return {
        "post": {
            "summary": summary,
            "description": description,
            "tags": ["RetryEngine"],
            "parameters": parameters,
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": body}},
            },
            "responses": responses,
        }
    }


def _export_path() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Export every record the filters match (streamed)",
            "description": (
                "The list's filters and sort; every matching record as the list answers it, "
                "one CSV row or one NDJSON line each, in constant memory whatever their number."
            ),
            "tags": ["SalesChannelFailedIntegrations"],
            "parameters": [
                {"$ref": "#/components/parameters/channel_path"},
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "allowEmptyValue": True,
                    "schema": {"type": "string", "enum": ["csv", "ndjson"], "default": "csv"},
                },
                *(p for p in filter_parameters() if p["name"] != "channel"),
            ],
            "responses": {
                "200": {
                    "description": "The records",
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "401": {"$ref": "#/components/responses/401"},
                "404": {"$ref": "#/components/responses/404"},
            },
        }
    }


def _operations_paths() -> dict[str, Any]:
    channel = {"$ref": "#/components/parameters/channel_path"}
    paging = [{"$ref": "#/components/parameters/page"}, {"$ref": "#/components/parameters/limit"}]
    page = _page(OPERATION_SCHEMA)
    return {
        OPERATIONS_PATH: {
            "get": {
                "summary": "The channel's bulk actions, newest first",
                "tags": ["RetryEngine"],
                "parameters": [channel, *paging],
                "responses": {"200": _json(page, "Bulk actions")},
            }
        },
        f"{OPERATIONS_PATH}{{operation_id}}/": {
            "get": {
                "summary": "One bulk action: its progress, then its final counts",
                "tags": ["RetryEngine"],
                "parameters": [
                    channel,
                    {
                        "name": "operation_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                ],
                "responses": {"200": _json(OPERATION_SCHEMA, "The bulk action")},
            }
        },
    }


AUDIT_ENTRY_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "user": {"type": "string", "nullable": True},
        "channel": {"type": "integer"},
        "action": {"type": "string"},
        "source": {"type": "string", "enum": ["api", "console", "admin", "command"]},
        "filters": {"type": "string"},
        "record": {"type": "integer", "nullable": True},
        "dry_run": {"type": "boolean"},
        "reset_count": {"type": "boolean"},
        "matched": {"type": "integer"},
        "affected": {"type": "integer"},
        "outcome": {"type": "string"},
        "operation": {"type": "integer", "nullable": True},
    },
}


def _audit_path() -> dict[str, Any]:
    text = {"type": "string", "maxLength": 100}
    when = {"type": "string", "format": "date-time"}
    parameters = [
        {"$ref": "#/components/parameters/page"},
        {"$ref": "#/components/parameters/limit"},
        {"name": "channel", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "user", "in": "query", "schema": text, "description": "A username."},
        {"name": "action", "in": "query", "schema": text},
        {"name": "source", "in": "query", "schema": text},
        {"name": "since", "in": "query", "schema": when},
        {"name": "until", "in": "query", "schema": when},
    ]
    for parameter in parameters:
        if "in" in parameter:
            parameter["allowEmptyValue"] = True
    page = _page(AUDIT_ENTRY_SCHEMA)
    return {
        AUDIT_PATH: {
            "get": {
                "summary": "Operator actions on the channels the user may read, newest first",
                "tags": ["RetryEngine"],
                "parameters": parameters,
                "responses": {
                    "200": _json(page, "Audit entries"),
                    "401": {"$ref": "#/components/responses/401"},
                },
            }
        }
    }


def _attempts_path() -> dict[str, Any]:
    attempt = {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": "string", "format": "date-time", "nullable": True},
            "outcome": {
                "type": "string",
                "nullable": True,
                "enum": [*AttemptOutcome.values, None],
            },
            "http_status": {"type": "integer", "nullable": True},
            "error": {"type": "string"},
            "worker": {"type": "string"},
            "idempotency_key": {"type": "string"},
        },
    }
    page = _page(attempt)
    return {
        "get": {
            "summary": "The retry attempts of one record",
            "tags": ["RetryEngine"],
            "parameters": [
                {"$ref": "#/components/parameters/channel_path"},
                {"$ref": "#/components/parameters/id_path"},
                {"$ref": "#/components/parameters/page"},
                {"$ref": "#/components/parameters/limit"},
            ],
            "responses": {
                "200": _json(page, "Attempts, oldest first"),
                "401": {"$ref": "#/components/responses/401"},
                "404": {"$ref": "#/components/responses/404"},
            },
        }
    }


CHANNELS_PATH = "/api/v1/channels/"
CHANNEL_PATH = "/api/v1/channels/{channel_id}/"
GRANTS_PATH = "/api/v1/channels/{channel_id}/grants/"
GRANT_PATH = "/api/v1/channels/{channel_id}/grants/{grant_id}/"


def _model_field_schema(model, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the bounds of the model field's validators and its maximum length."""
    field = model._meta.get_field(name)
    schema = dict(schema)
    for validator in field.validators:
        if isinstance(validator, MinValueValidator):
            schema["minimum"] = validator.limit_value
        elif isinstance(validator, MaxValueValidator):
            schema["maximum"] = validator.limit_value
    if isinstance(field, PositiveIntegerField):
        schema.setdefault("minimum", 0)
    if field.max_length and schema.get("type") == "string":
        schema["maxLength"] = field.max_length
    return schema


def _policy_schema(*, write: bool) -> dict[str, Any]:
    properties = {
        "auto_retry": {"type": "boolean"},
        "backoff": {"type": "string", "enum": list(Backoff.values)},
        "backoff_factor": _model_field_schema(RetryPolicy, "backoff_factor", {"type": "number"}),
        "max_delay": _model_field_schema(RetryPolicy, "max_delay", {"type": "integer"}),
        "jitter": _model_field_schema(RetryPolicy, "jitter", {"type": "number"}),
    }
    if write:
        return {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "nullable": True,
            "description": "The settings to change (the others stay); null: the default policy.",
        }
    properties["default"] = {
        "type": "boolean",
        "description": "No policy of the channel's own: the service's default.",
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _dispatch_schema(timestamp: dict[str, Any]) -> dict[str, Any]:
    """The dispatch health of a channel (channels.services.dispatch_health)."""
    when = {**timestamp, "nullable": True}
    count = {"type": "integer", "minimum": 0, "readOnly": True}
    properties = {
        "state": {
            "type": "string",
            "enum": ["sending", "held", "paused", "disabled", "no_endpoint"],
            "description": "Whether attempts go to the channel app now, and if not, why.",
        },
        "circuit": {"type": "string", "enum": list(ChannelDispatch.Circuit.values)},
        "circuit_since": when,
        "next_probe_at": when,
        "consecutive_failures": count,
        "asked_to_wait_until": {**when, "description": "A Retry-After the app sent."},
        "paused_at": when,
        "paused_by": {"type": "string", "readOnly": True},
        "disabled_at": {**when, "description": "Disabled after a sustained outage."},
        "in_flight": count,
        "send_window": count,
        "rate": {
            "type": "number",
            "nullable": True,
            "readOnly": True,
            "description": "Attempts per second allowed now: the rate limit or the learned "
            "rate, whichever is lower (or the ramp of a drain); null: none.",
        },
        "learned_rate": {
            "type": "number",
            "nullable": True,
            "readOnly": True,
            "description": "Attempts per second the app's 429s taught (growing by a tenth "
            "every few minutes without one); null: none.",
        },
        "last_success_at": when,
        "last_failure_at": when,
        "due": {**count, "description": "Records due now, sent as the limits allow."},
        "held": {**count, "description": "Records due now, held (their retries untouched)."},
        "oldest_due_age_seconds": {"type": "number", "nullable": True, "readOnly": True},
        "drain_seconds_estimate": {
            "type": "number",
            "nullable": True,
            "readOnly": True,
            "description": "The due or held records over the rate allowed now.",
        },
    }
    return {
        "type": "object",
        "readOnly": True,
        "description": "What the retry engine knows of the channel app (delivery protection).",
        "properties": properties,
        "required": list(properties),
    }


# Text a serializer takes: no null character, and something left after trimming.
_NAME_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _channel_schemas() -> dict[str, dict[str, Any]]:
    reasons = list(ReasonType.values)
    timestamp = {"type": "string", "format": "date-time", "readOnly": True}
    read = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "readOnly": True},
            "name": {"type": "string"},
            "channel_type": {"type": "string", "enum": list(ChannelType.values)},
            "is_active": {"type": "boolean"},
            "retry_endpoint": {"type": "string"},
            "signing_secret": {
                "type": "object",
                "description": "Whether a secret signs retry requests; never the secret.",
                "properties": {
                    "set": {"type": "boolean"},
                    "rotated_at": {**timestamp, "nullable": True},
                    "previous_signs_until": {**timestamp, "nullable": True},
                },
                "required": ["set", "rotated_at", "previous_signs_until"],
            },
            "retry_policies": {
                "type": "object",
                "properties": {reason: _policy_schema(write=False) for reason in reasons},
                "required": reasons,
            },
            "max_concurrency": {
                "type": "integer",
                "nullable": True,
                "description": "The most attempts in flight to the channel app; null: no cap.",
            },
            "rate_limit": {
                "type": "number",
                "nullable": True,
                "description": "Attempts per second to the channel app; null: no limit.",
            },
            "dispatch": _dispatch_schema(timestamp),
            "role": {
                "type": "string",
                "enum": list(Role.values),
                "description": "What the requesting user may do on the channel.",
            },
            "created_date": timestamp,
            "modified_date": timestamp,
        },
    }
    read["required"] = list(read["properties"])
    secret_field = Channel._meta.get_field("signing_secret")
    write = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": _model_field_schema(
                Channel, "name", {"type": "string", "pattern": _NAME_PATTERN}
            ),
            "channel_type": {"type": "string", "enum": list(ChannelType.values)},
            "is_active": {"type": "boolean"},
            "retry_endpoint": _model_field_schema(
                Channel,
                "retry_endpoint",
                {
                    "type": "string",
                    "description": (
                        "An http(s) URL without credentials; empty: none. Its address is "
                        "checked again when connecting (ALLOWED_ENDPOINT_NETWORKS)."
                    ),
                },
            ),
            "signing_secret": {
                "type": "string",
                "nullable": True,
                "writeOnly": True,
                "pattern": rf"^(|[^\x00]{{{MIN_SECRET_LENGTH},{secret_field.max_length}}})$",
                "description": (
                    "Replaces the secret (the previous one signs on for "
                    "SIGNING_SECRET_OVERLAP_HOURS); empty or null: no signing."
                ),
            },
            "retry_policies": {
                "type": "object",
                "additionalProperties": False,
                "properties": {reason: _policy_schema(write=True) for reason in reasons},
            },
            "max_concurrency": _model_field_schema(
                Channel, "max_concurrency", {"type": "integer", "nullable": True}
            ),
            "rate_limit": _model_field_schema(
                Channel, "rate_limit", {"type": "number", "nullable": True}
            ),
        },
    }
    new = {**copy.deepcopy(write), "required": ["name"]}
    grant = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "readOnly": True},
            "user": {"type": "string", "description": "The user's username."},
            "channel": {
                "type": "integer",
                "nullable": True,
                "description": "null: a role on every channel (read-only here).",
            },
            "role": {"type": "string", "enum": list(Role.values)},
            "created_date": timestamp,
        },
        "required": ["id", "user", "channel", "role", "created_date"],
    }
    grant_write = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"user": {"type": "string"}, "role": grant["properties"]["role"]},
        "required": ["user", "role"],
    }
    grant_change = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"role": grant["properties"]["role"]},
        "required": ["role"],
    }
    return {
        "Channel": read,
        "ChannelWrite": write,
        "ChannelNew": new,
        "ChannelGrant": grant,
        "ChannelGrantWrite": grant_write,
        "ChannelGrantChange": grant_change,
    }


def _page(items: dict[str, Any]) -> dict[str, Any]:
    """A page of a list: `{count, next, previous, results: [items]}`."""
    return {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "next": {"type": "string", "nullable": True},
            "previous": {"type": "string", "nullable": True},
            "results": {"type": "array", "items": items},
        },
        "required": ["count", "next", "previous", "results"],
    }


def _page_of(schema_name: str) -> dict[str, Any]:
    return _page(_schema_ref(schema_name))


def _body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _schema_ref(schema_name)}}}


def _channel_paths() -> dict[str, Any]:
    channel = {"$ref": "#/components/parameters/channel_path"}
    grant_id = {
        "name": "grant_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    paging = [{"$ref": "#/components/parameters/page"}, {"$ref": "#/components/parameters/limit"}]
    ok = {"$ref": "#/components/responses/401"}
    admins = _error_response("Beyond the user's role: the channel's admins only.")
    grants_tag = ["Channels"]
    conflict = _error_response("The user has a role on this channel already.")
    return {
        CHANNELS_PATH: {
            "get": {
                "summary": "The channels the user may see, with the user's role on each",
                "tags": grants_tag,
                "parameters": paging,
                "responses": {"200": _json(_page_of("Channel"), "Channels"), "401": ok},
            },
            "post": {
                "summary": "Add a channel (an admin of every channel)",
                "tags": grants_tag,
                "requestBody": _body("ChannelNew"),
                "responses": {
                    "201": _json(_schema_ref("Channel"), "Created"),
                    "401": ok,
                    "403": _error_response("Only an admin of every channel may add channels."),
                },
            },
        },
        CHANNEL_PATH: {
            "get": {
                "summary": "A channel's settings",
                "tags": grants_tag,
                "parameters": [channel],
                "responses": {"200": _json(_schema_ref("Channel"), "Settings"), "401": ok},
            },
            "patch": {
                "summary": "Change a channel's settings (its admins)",
                "description": "Any subset of the settings; an unknown key answers 400.",
                "tags": grants_tag,
                "parameters": [channel],
                "requestBody": _body("ChannelWrite"),
                "responses": {
                    "200": _json(_schema_ref("Channel"), "The settings afterwards"),
                    "401": ok,
                    "403": admins,
                },
            },
        },
        **{
            f"{CHANNEL_PATH}{action}/": {
                "post": {
                    "summary": summary,
                    "tags": grants_tag,
                    "parameters": [channel],
                    "responses": {
                        "200": _json(_schema_ref("Channel"), "The channel afterwards"),
                        "401": ok,
                        "403": _error_response("Beyond the user's role: operators and admins."),
                    },
                }
            }
            for action, summary in (
                ("pause", "Hold the channel's dispatch: nothing is sent, retries untouched"),
                ("resume", "Lift a pause (or a disabling); the backlog drains from a slow start"),
            )
        },
        GRANTS_PATH: {
            "get": {
                "summary": "Who has which role on the channel (its admins)",
                "tags": grants_tag,
                "parameters": [channel, *paging],
                "responses": {
                    "200": _json(_page_of("ChannelGrant"), "Grants"),
                    "401": ok,
                    "403": admins,
                },
            },
            "post": {
                "summary": "Give a user a role on the channel (its admins)",
                "tags": grants_tag,
                "parameters": [channel],
                "requestBody": _body("ChannelGrantWrite"),
                "responses": {
                    "201": _json(_schema_ref("ChannelGrant"), "Given"),
                    "401": ok,
                    "403": admins,
                    "409": conflict,
                },
            },
        },
        GRANT_PATH: {
            "get": {
                "summary": "One grant (its channel's admins)",
                "tags": grants_tag,
                "parameters": [channel, grant_id],
                "responses": {
                    "200": _json(_schema_ref("ChannelGrant"), "The grant"),
                    "401": ok,
                    "403": admins,
                },
            },
            "patch": {
                "summary": "Change a user's role (not one's own, not a role on every channel)",
                "tags": grants_tag,
                "parameters": [channel, grant_id],
                "requestBody": _body("ChannelGrantChange"),
                "responses": {
                    "200": _json(_schema_ref("ChannelGrant"), "The grant afterwards"),
                    "401": ok,
                    "403": admins,
                },
            },
            "delete": {
                "summary": "Remove a user's role (not one's own, not a role on every channel)",
                "tags": grants_tag,
                "parameters": [channel, grant_id],
                "responses": {"204": {"description": "Removed"}, "401": ok, "403": admins},
            },
        },
    }


def _add_error_responses(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    for status in ("400", "503") + (("413", "415") if method in BODY_METHODS else ()):
        responses.setdefault(status, {"$ref": f"#/components/responses/{status}"})
    paged = {"$ref": "#/components/parameters/page"} in operation.get("parameters", [])
    # A channel or record not found (or not granted), or a page past the last.
    if "{channel_id}" in path or paged:
        responses.setdefault("404", {"$ref": "#/components/responses/404"})


def build_document(contract: dict[str, Any] | None = None) -> dict[str, Any]:
    """The served document: `contract` (by default the contract file) with the additions."""
    document = copy.deepcopy(contract if contract is not None else load_contract())
    schemas = document["components"]["schemas"]
    record = schemas["FailedIntegration"]
    _record_schema(record)

    # What a create or full update requires: the contract's list, less `channel` (the URL's).
    write = copy.deepcopy(record)
    write["required"] = [name for name in record["required"] if name != "channel"]
    write["description"] = (
        "`channel` may be left out; when given it must be the channel of the URL."
    )
    schemas["FailedIntegrationWrite"] = write
    partial = copy.deepcopy(write)
    partial["required"] = []
    partial["description"] = "Any subset of the fields."
    schemas["FailedIntegrationPartial"] = partial

    # An empty query parameter is one not given, as in the original API (django-filter).
    for parameter in document["components"]["parameters"].values():
        if parameter["in"] == "query":
            parameter["allowEmptyValue"] = True
    document["components"]["responses"].update(copy.deepcopy(ERROR_RESPONSES))
    document["components"]["responses"]["500"] = _error_response("Server error (no traceback).")
    for path in (LIST_PATH, DETAIL_PATH):
        for method, operation in document["paths"][path].items():
            if method in BODY_METHODS:
                body = operation["requestBody"]["content"]["application/json"]
                body["schema"] = _schema_ref(
                    "FailedIntegrationPartial" if method == "patch" else "FailedIntegrationWrite"
                )
            if method in {"put", "patch"}:
                operation["responses"]["200"]["content"] = {
                    "application/json": {"schema": _schema_ref("FailedIntegration")}
                }

    list_parameters = document["paths"][LIST_PATH]["get"]["parameters"]
    list_parameters.extend(
        parameter for parameter in filter_parameters() if parameter["name"] != "channel"
    )
    document["paths"][STATS_PATH] = _stats_path()
    document["paths"][BULK_PATH] = _bulk_path()
    for path in (LIST_PATH, BULK_PATH):
        _idempotent(document["paths"][path]["post"])
    document["paths"][ATTEMPTS_PATH] = _attempts_path()
    document["paths"][f"{LIST_PATH}export/"] = _export_path()
    for action in ACTIONS:
        document["paths"][f"{LIST_PATH}{action}/"] = _action_path(action, bulk=True)
    for action in RECORD_ACTIONS:
        document["paths"][f"{DETAIL_PATH}{action}/"] = _action_path(action, bulk=False)
    document["paths"]["/api/v1/auth/login/"] = copy.deepcopy(LOGIN_PATH)
    document["paths"]["/api/v1/content_types/"] = copy.deepcopy(CONTENT_TYPES_PATH)
    schemas.update(_channel_schemas())
    document["paths"].update(_channel_paths())
    document["paths"].update(_operations_paths())
    document["paths"].update(_audit_path())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _add_error_responses(path, method, operation)
    document["info"]["description"] = (
        "Sales channel failed integrations. Unknown routes answer 404 and unsupported methods "
        "405 (with `Allow`), both as JSON `{detail, code}`."
    )
    return document


@functools.cache
def served_document() -> dict[str, Any]:
    return build_document()


class OpenAPIView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response(served_document())
