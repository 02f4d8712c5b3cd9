from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from common.pagination import paginated_response
from common.params import int_param
from common.views_base import JSONAPIView

from .. import selectors, services
from ..models import Channel, FailedIntegration
from .serializers import FailedIntegrationWriteSerializer, failed_integration_data

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

    def get_failed_integration(self, pk: int) -> FailedIntegration:
        failed = selectors.failed_integration_get(channel=self.channel, pk=pk)
        if failed is None:
            raise NotFound(FAILED_INTEGRATION_NOT_FOUND)
        return failed

    def write_serializer(self, data, *, partial: bool = False) -> FailedIntegrationWriteSerializer:
        serializer = FailedIntegrationWriteSerializer(
            data=data, partial=partial, context={"channel": self.channel}
        )
        serializer.is_valid(raise_exception=True)
        return serializer


class FailedIntegrationListView(ChannelScopedView):
    def get(self, request, channel_id: int):
        queryset = selectors.failed_integration_list(channel=self.channel)
        channel_filter = int_param(request.query_params, "channel")
        if channel_filter is not None and channel_filter != self.channel.pk:
            queryset = queryset.none()
        return paginated_response(request, queryset, failed_integration_data)

    def post(self, request, channel_id: int):
        serializer = self.write_serializer(request.data)
        failed = services.failed_integration_create(
            channel=self.channel, data=serializer.validated_data
        )
        return Response(failed_integration_data(failed), status=status.HTTP_201_CREATED)


class FailedIntegrationDetailView(ChannelScopedView):
    def get(self, request, channel_id: int, pk: int):
        return Response(failed_integration_data(self.get_failed_integration(pk)))

    def put(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=False)

    def patch(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk: int, *, partial: bool):
        failed = self.get_failed_integration(pk)
        serializer = self.write_serializer(request.data, partial=partial)
        failed = services.failed_integration_update(failed=failed, data=serializer.validated_data)
        return Response(failed_integration_data(failed))

    def delete(self, request, channel_id: int, pk: int):
        services.failed_integration_delete(failed=self.get_failed_integration(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
