from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from .views import FailedIntegrationViewSet

router = DefaultRouter()
router.register(
    r"channel/(?P<channel_id>[0-9]+)/failed_integrations",
    FailedIntegrationViewSet,
    basename="failed-integration",
)

urlpatterns = [path("api/v1/", include(router.urls))]
