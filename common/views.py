"""JSON answers for what Django itself handles: unknown routes and server faults."""

from __future__ import annotations

from django.http import JsonResponse


def not_found(request, exception=None):
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def bad_request(request, exception=None):
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def permission_denied(request, exception=None):
    return JsonResponse(
        {
            "detail": "You do not have permission to perform this action.",
            "code": "permission_denied",
        },
        status=403,
    )


def server_error(request):
    # Never a traceback: the fault is logged by django.request.
    return JsonResponse({"detail": "A server error occurred.", "code": "server_error"}, status=500)


def health(request):
    """Liveness and database reachability, for load balancers (no authentication)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})
