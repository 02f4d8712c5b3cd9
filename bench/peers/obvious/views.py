from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

# The app whose Channel and FailedIntegration are served: the service's `integrations` (the
# `obvious` peer) or the implementation's own schema, `obvious_own` (bench/peers/obvious_own).
Channel = apps.get_model(settings.OBVIOUS_MODELS, "Channel")
FailedIntegration = apps.get_model(settings.OBVIOUS_MODELS, "FailedIntegration")


class FailedIntegrationSerializer(serializers.ModelSerializer):
    class Meta:
        model = FailedIntegration
        fields = [
            "pk",
            "channel",
            "version_date",
            "reason_type",
            "is_active",
            "content_type",
            "object_id",
            "expiration_date",
            "retry_count",
            "max_retry_count",
            "retry_interval",
            "integration_action",
            "log_id",
        ]
        read_only_fields = ["channel"]  # the URL's


class FailedIntegrationPagination(PageNumberPagination):
    page_size = 10
    page_size_query_param = "limit"
    max_page_size = 1000


class FailedIntegrationViewSet(viewsets.ModelViewSet):
    serializer_class = FailedIntegrationSerializer
    pagination_class = FailedIntegrationPagination
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["reason_type", "is_active"]

    def get_channel(self) -> Channel:
        return get_object_or_404(Channel, pk=self.kwargs["channel_id"])

    def get_queryset(self):
        return FailedIntegration.objects.filter(channel=self.get_channel())

    def perform_create(self, serializer):
        serializer.save(channel=self.get_channel())

    @action(detail=False, methods=["post"])
    def bulk(self, request, channel_id=None):
        channel = self.get_channel()
        serializer = self.get_serializer(data=request.data, many=True)
        serializer.is_valid(raise_exception=True)
        serializer.save(channel=channel)
        return Response(serializer.data, status=status.HTTP_201_CREATED)
