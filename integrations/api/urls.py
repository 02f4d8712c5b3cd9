from __future__ import annotations

from django.urls import path

from .content_types import ContentTypeListView
from .views import (
    FailedIntegrationBulkView,
    FailedIntegrationDetailView,
    FailedIntegrationListView,
    FailedIntegrationStatsView,
)

urlpatterns = [
    path("content_types/", ContentTypeListView.as_view(), name="content-type-list"),
    path(
        "channel/<int:channel_id>/failed_integrations/",
        FailedIntegrationListView.as_view(),
        name="failed-integration-list",
    ),
    path(
        "channel/<int:channel_id>/failed_integrations/bulk/",
        FailedIntegrationBulkView.as_view(),
        name="failed-integration-bulk",
    ),
    path(
        "channel/<int:channel_id>/failed_integrations/stats/",
        FailedIntegrationStatsView.as_view(),
        name="failed-integration-stats",
    ),
    path(
        "channel/<int:channel_id>/failed_integrations/<int:pk>/",
        FailedIntegrationDetailView.as_view(),
        name="failed-integration-detail",
    ),
]
