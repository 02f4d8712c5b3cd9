"""The admin site, its login throttled like the API's (`throttle.login_wait`)."""

from __future__ import annotations

import math

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpResponse


class ServiceAdminSite(admin.AdminSite):
    def login(self, request, extra_context=None):
        from .throttle import login_wait  # not at import: this module is an app's config

        if request.method == "POST":
            wait = login_wait(request)
            if wait is not None:
                seconds = math.ceil(wait)
                response = HttpResponse(
                    f"Too many login attempts from your address; try again in {seconds} seconds.",
                    status=429,
                    content_type="text/plain; charset=utf-8",
                )
                response["Retry-After"] = str(seconds)
                return response
        return super().login(request, extra_context)


class ServiceAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.ServiceAdminSite"
