from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.api import LoginView
from common.views import api_root, health
from integrations.api.openapi import OpenAPIView
from ops.views import api_docs, metrics_view, ready

handler400 = "common.views.bad_request"
handler403 = "common.views.permission_denied"
handler404 = "common.views.not_found"
handler500 = "common.views.server_error"

urlpatterns = [
    path("api/v1/auth/login/", LoginView.as_view(), name="login"),
    path("api/v1/openapi.json", OpenAPIView.as_view(), name="openapi"),
    path("api/v1/", api_root, name="api-root"),
    path("api/v1/", include("integrations.api.urls")),
    path("console/", include("console.urls")),
    path("", RedirectView.as_view(pattern_name="console:overview"), name="root"),
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    path("readyz", ready, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/docs/", api_docs, name="api-docs"),
]
