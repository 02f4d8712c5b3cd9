from __future__ import annotations

from django.urls import path

from integrations.api.audit import AuditListView
from integrations.api.channels import (
    ChannelDetailView,
    ChannelGrantDetailView,
    ChannelGrantListView,
    ChannelHoldView,
    ChannelListView,
)
from integrations.api.content_types import ContentTypeListView
from integrations.api.views import (
    FailedIntegrationActionView,
    FailedIntegrationAttemptsView,
    FailedIntegrationBulkActionView,
    FailedIntegrationBulkView,
    FailedIntegrationDetailView,
    FailedIntegrationExportView,
    FailedIntegrationListView,
    FailedIntegrationStatsView,
    OperationDetailView,
    OperationListView,
)
from integrations.channels.services import PAUSE, RESUME
from integrations.lifecycle.transitions import OPERATOR_ACTIONS as ACTIONS

RECORD_ACTIONS = ("retry", "park", "unpark")

urlpatterns = [
    path("content_types/", ContentTypeListView.as_view(), name="content-type-list"),
    path("audit/", AuditListView.as_view(), name="audit-list"),
    path("channels/", ChannelListView.as_view(), name="channel-list"),
    path("channels/<int:channel_id>/", ChannelDetailView.as_view(), name="channel-detail"),
    *(
        path(
            f"channels/<int:channel_id>/{action}/",
            ChannelHoldView.as_view(action_name=action),
            name=f"channel-{action}",
        )
        for action in (PAUSE, RESUME)
    ),
    path(
        "channels/<int:channel_id>/grants/",
        ChannelGrantListView.as_view(),
        name="channel-grant-list",
    ),
    path(
        "channels/<int:channel_id>/grants/<int:pk>/",
        ChannelGrantDetailView.as_view(),
        name="channel-grant-detail",
    ),
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
        "channel/<int:channel_id>/failed_integrations/export/",
        FailedIntegrationExportView.as_view(),
        name="failed-integration-export",
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
    path(
        "channel/<int:channel_id>/failed_integrations/<int:pk>/attempts/",
        FailedIntegrationAttemptsView.as_view(),
        name="failed-integration-attempts",
    ),
    path(
        "channel/<int:channel_id>/operations/",
        OperationListView.as_view(),
        name="operation-list",
    ),
    path(
        "channel/<int:channel_id>/operations/<int:pk>/",
        OperationDetailView.as_view(),
        name="operation-detail",
    ),
    *(
        path(
            f"channel/<int:channel_id>/failed_integrations/{action}/",
            FailedIntegrationBulkActionView.as_view(action_name=action),
            name=f"failed-integration-bulk-{action}",
        )
        for action in ACTIONS
    ),
    *(
        path(
            f"channel/<int:channel_id>/failed_integrations/<int:pk>/{action}/",
            FailedIntegrationActionView.as_view(action_name=action),
            name=f"failed-integration-{action}",
        )
        for action in RECORD_ACTIONS
    ),
]
