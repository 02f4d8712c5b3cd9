"""One error shape for the whole API.

* field errors: ``{"field": ["message"]}`` (``non_field_errors`` for cross-field problems);
* everything else: ``{"detail": "...", "code": "..."}``.
"""

from __future__ import annotations

import logging

import psycopg
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 2


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; retry shortly."
    default_code = "database_unavailable"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource has changed since it was read (If-Match does not match)."
    default_code = "precondition_failed"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class InvalidBody(exceptions.ValidationError):
    """A 400 whose body is given as it is (DRF's ValidationError turns every value into text,
    which would make the index of a bad bulk item a string)."""

    def __init__(self, body: dict | list):
        self.detail = body


# The errors of a database gone (Django's, and psycopg's from statements run on its cursors).
LOST_CONNECTION = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def lost_connection(exc: Exception) -> bool:
    """Whether a database error is the database gone (which its message says enough about),
    not a bug (whose traceback is wanted)."""
    return isinstance(exc, LOST_CONNECTION)


def database_unavailable(exc: Exception, response):
    """Logs a lost database and gives `response` (a 503 that says so) its `Retry-After`."""
    logger.warning("database unavailable: %s", exc)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc, context):
    if isinstance(exc, OperationalError | InterfaceError):
        set_rollback()
        lost, exc = exc, ServiceUnavailable()
        response = database_unavailable(lost, drf_exception_handler(exc, context))
    else:
        response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        response.data = error_body(exc.detail)
    return response


def error_body(detail) -> dict | list:
    """`detail` of an APIException as the body clients receive."""
    if isinstance(detail, dict | list):
        return detail
    return {"detail": str(detail), "code": getattr(detail, "code", None) or "error"}
