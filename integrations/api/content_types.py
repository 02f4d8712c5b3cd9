from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from common.pagination import paginated_response
from common.params import str_param
from common.views_base import JSONAPIView
from integrations.api.access import ADMIN, may_everywhere
from integrations.reads import selectors
from integrations.records import services


class ContentTypeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    app_label = serializers.RegexField(
        r"^[a-z][a-z0-9_]*$",
        max_length=100,
        error_messages={"invalid": "Lower-case letters, digits and underscores, e.g. products."},
    )
    model = serializers.RegexField(
        r"^[a-z][a-z0-9_]*$",
        max_length=100,
        error_messages={"invalid": "Lower-case letters, digits and underscores, e.g. product."},
    )


class GlobalAdminMayWrite(BasePermission):
    message = "Only an admin of every channel may add content types."

    def has_permission(self, request, view):
        return request.method in SAFE_METHODS or may_everywhere(request.user, ADMIN)


def content_type_data(content_type: ContentType) -> dict:
    return {"id": content_type.pk, "app_label": content_type.app_label, "model": content_type.model}


class ContentTypeListView(JSONAPIView):
    """The kinds of objects a failure can be reported for (`content_type` of a record)."""

    permission_classes = [*JSONAPIView.permission_classes, GlobalAdminMayWrite]

    def get(self, request):
        queryset = selectors.content_type_list(
            app_label=str_param(request.query_params, "app_label"),
            model=str_param(request.query_params, "model"),
        )
        return paginated_response(request, queryset, content_type_data)

    def post(self, request):
        serializer = ContentTypeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        content_type, created = services.content_type_get_or_create(**serializer.validated_data)
        return Response(
            content_type_data(content_type),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
