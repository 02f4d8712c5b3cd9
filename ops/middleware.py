"""Every request gets an id (`X-Request-ID` on the answer), its metrics and one access log line
with its route, status, duration, user and channel."""

from __future__ import annotations

import logging
import os
import re
import time

from django.conf import settings
from django.urls import Resolver404, resolve

from . import metrics
from .logs import log_context

access_log = logging.getLogger("fi.access")
REQUEST_ID_HEADER = "X-Request-ID"
# An id a proxy sent is kept if it is short and plain; anything else is replaced.
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"


def request_id(request) -> str:
    """The id a trusted proxy sent (with NUM_PROXIES set, the service is behind proxies), or a
    new one."""
    if settings.REST_FRAMEWORK.get("NUM_PROXIES"):
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        if ACCEPTED_ID.fullmatch(given):
            return given
    return os.urandom(16).hex()  # as random as uuid4's, without building a UUID


def route_of(request) -> tuple[str, object]:
    """The URL pattern's name (never the raw path) and the channel in the URL, if any."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        matched = getattr(request, "matched_route", None)  # the fast path matched these patterns
        if matched is not None:
            return matched
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return UNMATCHED, None
    return match.view_name or match.route or UNMATCHED, match.kwargs.get("channel_id")


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        rid = request_id(request)
        with log_context(request_id=rid):
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            response[REQUEST_ID_HEADER] = rid
            route, channel = route_of(request)
            metrics.request_answered(route, request.method, response.status_code, seconds)
            if access_log.isEnabledFor(logging.INFO):
                _log_access(request, response, route, channel, seconds)
        return response


def _log_access(request, response, route: str, channel, seconds: float) -> None:
    """The request's access log line (inside its log context: it carries the request id)."""
    user = getattr(request, "user", None)
    username = (
        user.get_username()
        if getattr(user, "is_authenticated", False)
        else getattr(request, "token_username", None)  # the fast path's
    )
    access_log.info(
        "%s %s %s %.1f ms",
        request.method,
        request.path,
        response.status_code,
        seconds * 1000,
        extra={
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            "user": username,
            "channel": channel,
        },
    )
