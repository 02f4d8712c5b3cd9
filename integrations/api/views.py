from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from common.pagination import PageRequest, cursor_link, paginated_response
from common.views_base import JSONAPIView

from .. import selectors, services
from ..models import Channel, FailedIntegration
from .serializers import failed_integration_data

CHANNEL_NOT_FOUND = "Channel not found."
FAILED_INTEGRATION_NOT_FOUND = "Failed integration not found."


class ChannelScopedView(JSONAPIView):
    """A view under /api/v1/channel/{channel_id}/: the channel must exist, else 404."""

    channel: Channel

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        channel = selectors.channel_get(channel_id=kwargs["channel_id"])
        if channel is None:
            raise NotFound(CHANNEL_NOT_FOUND)
        self.channel = channel

    def data(self, failed: FailedIntegration) -> dict:
        return failed_integration_data(failed, has_endpoint=bool(self.channel.retry_endpoint))

    def get_failed_integration(self, pk: int) -> FailedIntegration:
        failed = selectors.failed_integration_get(channel=self.channel, pk=pk)
        if failed is None:
            raise NotFound(FAILED_INTEGRATION_NOT_FOUND)
        return failed


class FailedIntegrationListView(ChannelScopedView):
    def get(self, request, channel_id: int):
        source = selectors.failed_integration_list_source(
            channel=self.channel, params=request.query_params
        )
        if source.cursor is None:
            return paginated_response(request, source.queryset, self.data, count=source.count)
        limit = PageRequest.from_query(request.query_params).limit
        records = list(source.queryset[: limit + 1])
        next_url = None
        if len(records) > limit:
            last = records[limit - 1]
            token = source.cursor.encode(getattr(last, source.cursor.field), last.pk)
            next_url = cursor_link(request, token)
        return Response(
            {
                "count": source.count,
                "next": next_url,
                "previous": None,
                "results": [self.data(record) for record in records[:limit]],
            }
        )

    def post(self, request, channel_id: int):
        failed = services.failed_integration_create(channel=self.channel, payload=request.data)
        return Response(self.data(failed), status=status.HTTP_201_CREATED)


class FailedIntegrationBulkView(ChannelScopedView):
    """`POST` a JSON array of failures: all are recorded, or none (400 naming each bad item)."""

    def post(self, request, channel_id: int):
        records = services.failed_integration_bulk_create(
            channel=self.channel, payload=request.data
        )
        return Response(
            {"count": len(records), "results": [self.data(record) for record in records]},
            status=status.HTTP_201_CREATED,
        )


class FailedIntegrationStatsView(ChannelScopedView):
    """Counts per group (`group_by=reason_type,content_type,...`) of the filtered records."""

    def get(self, request, channel_id: int):
        return Response(
            selectors.failed_integration_stats(channel=self.channel, params=request.query_params)
        )


class FailedIntegrationDetailView(ChannelScopedView):
    def get(self, request, channel_id: int, pk: int):
        return Response(self.data(self.get_failed_integration(pk)))

    def put(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=False)

    def patch(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk: int, *, partial: bool):
        failed = services.failed_integration_update(
            failed=self.get_failed_integration(pk), payload=request.data, partial=partial
        )
        return Response(self.data(failed))

    def delete(self, request, channel_id: int, pk: int):
        services.failed_integration_delete(failed=self.get_failed_integration(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
