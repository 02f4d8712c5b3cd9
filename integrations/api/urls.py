from __future__ import annotations

from django.urls import path

from .content_types import ContentTypeListView
from .views import FailedIntegrationDetailView, FailedIntegrationListView

urlpatterns = [
    path("content_types/", ContentTypeListView.as_view(), name="content-type-list"),
    path(
        "channel/<int:channel_id>/failed_integrations/",
        FailedIntegrationListView.as_view(),
        name="failed-integration-list",
    ),
    path(
        "channel/<int:channel_id>/failed_integrations/<int:pk>/",
        FailedIntegrationDetailView.as_view(),
        name="failed-integration-detail",
    ),
]
