"""JSON answers for what Django itself handles: unknown routes and server faults."""

from __future__ import annotations

from django.http import JsonResponse

from common.exceptions import database_unavailable


def _console_page(request, status: int, message: str):
    """The console's pages answer as pages; everything else as JSON."""
    if request.path.startswith("/console/"):
        from django.shortcuts import render

        return render(request, "console/denied.html", {"message": message}, status=status)
    return None


def not_found(request, exception=None):
    page = _console_page(request, 404, "Not found: it does not exist, or it is not yours.")
    if page is not None:
        return page
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def bad_request(request, exception=None):
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def permission_denied(request, exception=None):
    page = _console_page(request, 403, "Your role does not allow it.")
    if page is not None:
        return page
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
    except Exception as exc:
        unavailable = {"status": "unavailable", "database": "unreachable"}
        return database_unavailable(exc, JsonResponse(unavailable, status=503))
    return JsonResponse({"status": "ok", "database": connection.vendor})


def api_root(request):
    """`/api/v1/`: where things are (no authentication; nothing but links)."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"},
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    base = request.build_absolute_uri("/api/v1/")
    return JsonResponse(
        {
            "openapi": base + "openapi.json",
            "login": base + "auth/login/",
            "channels": base + "channels/",
            "failed_integrations": base + "channel/{channel_id}/failed_integrations/",
            "content_types": base + "content_types/",
            "audit": base + "audit/",
            "console": request.build_absolute_uri("/console/"),
            "health": request.build_absolute_uri("/healthz"),
        }
    )
