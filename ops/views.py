"""`/metrics` (Prometheus) and `/readyz` (readiness, for load balancers and orchestrators)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from . import metrics

_migrated = False  # once every migration is applied, it stays so for this process


def unapplied_migrations() -> list[str]:
    global _migrated
    if _migrated:
        return []
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    missing = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    _migrated = not missing
    return missing


@require_safe
def ready(request):
    """200 when the database answers and every migration is applied; else 503 naming what
    is wrong."""
    problems = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        missing = unapplied_migrations()
    except Exception as exc:
        problems.append(
            {"check": "database", "detail": f"the database does not answer: {exc}"[:300]}
        )
    else:
        if missing:
            problems.append(
                {
                    "check": "migrations",
                    "detail": f"{len(missing)} unapplied: {', '.join(missing[:10])}",
                }
            )
    if problems:
        response = JsonResponse({"status": "unavailable", "problems": problems}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "ready", "database": connection.vendor})


@require_safe
def metrics_view(request):
    """The metrics in Prometheus' text format. With METRICS_TOKEN set, only for `Authorization:
    Bearer <METRICS_TOKEN>`; without it, served in the embedded mode and refused in
    production."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = JsonResponse(
                {
                    "detail": "The metrics need Authorization: Bearer <METRICS_TOKEN>.",
                    "code": "not_authenticated",
                },
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif settings.PRODUCTION:
        return JsonResponse(
            {
                "detail": "Set METRICS_TOKEN to serve the metrics in production.",
                "code": "metrics_disabled",
            },
            status=403,
        )
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


@require_safe
def api_docs(request):
    """Interactive docs (Swagger UI, from the drf-spectacular-sidecar package's files) over the
    served OpenAPI document, with its token scheme: authorize, then try each operation."""
    from django.shortcuts import render
    from django.urls import reverse

    return render(request, "ops/api_docs.html", {"schema_url": reverse("openapi")})
