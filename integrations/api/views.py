from __future__ import annotations

from django.db import transaction
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from common.database import is_postgresql
from common.exceptions import PreconditionFailed
from common.fields import format_datetime_utc
from common.pagination import PageRequest, cursor_link, paginated_response
from common.views_base import JSONAPIView
from integrations.api.access import BEYOND_ROLE, READ, WRITE, allows, channel_access
from integrations.lifecycle.states import dispatch_of
from integrations.models import AuditEntry, BulkAction, Channel, FailedIntegration, RetryAttempt
from integrations.operations import bulk
from integrations.operations.single import record_action
from integrations.reads import export, fastpath, selectors
from integrations.records import idempotency, services
from integrations.records.representation import (
    etag,
    failed_integration_data,
    failed_integrations_data,
)
from integrations.records.services import FAILED_INTEGRATION_NOT_FOUND

CHANNEL_NOT_FOUND = "Channel not found."


class ChannelScopedView(JSONAPIView):
    """A view of one channel (`channel_id` in its route): the channel must exist and be the
    user's (else 404, the same answer); a request beyond the user's role answers 403. A read
    needs READ and a write WRITE, unless the view asks for more (`needs`)."""

    channel: Channel
    # The access a request needs, by method; the others: READ to read, WRITE to write.
    needs: dict[str, str] = {}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        channel = selectors.channel_get(channel_id=kwargs["channel_id"])
        access = channel_access(request.user, channel.pk) if channel is not None else None
        if access is None:
            raise NotFound(CHANNEL_NOT_FOUND)
        needed = self.needs.get(request.method, READ if request.method in SAFE_METHODS else WRITE)
        if not allows(access, needed):
            raise PermissionDenied(BEYOND_ROLE[needed])
        self.channel = channel
        self.access = access
        # A channel app's error text is shown to those who may change the channel's records.
        self.shows_errors = allows(access, WRITE)

    def statement_guard(self) -> tuple[str, list]:
        """The guard of a fast-path statement this view runs: the channel, whose access
        `initial` has checked."""
        return fastpath.CHANNEL_SQL, [self.shows_errors, self.channel.pk]

    def data_list(self, records: list[FailedIntegration]) -> list[dict]:
        return failed_integrations_data(
            records, channel=self.channel, shows_errors=self.shows_errors
        )

    def data(self, failed: FailedIntegration) -> dict:
        return failed_integration_data(
            failed,
            **dispatch_of(self.channel),
            shows_errors=self.shows_errors,
        )

    def get_failed_integration(self, pk: int) -> FailedIntegration:
        failed = selectors.failed_integration_get(channel=self.channel, pk=pk)
        if failed is None:
            raise NotFound(FAILED_INTEGRATION_NOT_FOUND)
        return failed


class FailedIntegrationListView(ChannelScopedView):
    # On PostgreSQL a page is the fast path's statement (`fastpath.list_page`), whichever front
    # door it came through; the queryset answers on SQLite, and whatever the statement leaves
    # to it (errors, filters with no SQL form). The tests' reference turns it off.
    page_statement = True

    def get(self, request, channel_id: int):
        if self.page_statement and is_postgresql():
            response = fastpath.list_page(request._request, self.channel.pk, self.statement_guard())
            if response is not None:
                return response
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
                "results": self.data_list(records[:limit]),
            }
        )

    def post(self, request, channel_id: int):
        return idempotency.report_once(
            idempotency.requested(request, self.channel, "create"),
            lambda claim: [
                services.failed_integration_create(
                    channel=self.channel, payload=request.data, claim=claim
                )
            ],
            lambda records: self.data(records[0]),
        )


class FailedIntegrationBulkView(ChannelScopedView):
    """`POST` a JSON array of failures: all are recorded, or none (400 naming each bad item)."""

    def post(self, request, channel_id: int):
        return idempotency.report_once(
            idempotency.requested(request, self.channel, "bulk"),
            lambda claim: services.failed_integration_bulk_create(
                channel=self.channel,
                payload=request.data,
                claim=claim,
                shows_errors=self.shows_errors,
            ),
            self.bulk_body,
        )

    def bulk_body(self, records: list[FailedIntegration]) -> dict | bytes:
        """The records' answer: as JSON the database wrote when it stored them, where it did
        (`services.STORED_JSON`), else as data."""
        answers = [getattr(record, services.STORED_JSON, None) for record in records]
        if all(answers):
            return b'{"count":%d,"results":[%s]}' % (len(records), ",".join(answers).encode())
        return {"count": len(records), "results": self.data_list(records)}


class FailedIntegrationStatsView(ChannelScopedView):
    """Counts per group (`group_by=reason_type,content_type,...`) of the filtered records."""

    def get(self, request, channel_id: int):
        return Response(
            selectors.failed_integration_stats(channel=self.channel, params=request.query_params)
        )


class FailedIntegrationDetailView(ChannelScopedView):
    """A record. Answers carry an `ETag`; a write with `If-Match` that no longer matches (the
    record changed since it was read) answers 412 and changes nothing."""

    # On PostgreSQL a record is the fast path's statement (`fastpath.retrieve`), whichever
    # front door it came through; the queryset answers on SQLite and a record not found.
    record_statement = True

    def get(self, request, channel_id: int, pk: int):
        if self.record_statement and is_postgresql():
            response = fastpath.retrieve(self.channel.pk, pk, self.statement_guard())
            if response is not None:
                return response
        return self.record_response(self.get_failed_integration(pk))

    def put(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=False)

    def patch(self, request, channel_id: int, pk: int):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk: int, *, partial: bool):
        with transaction.atomic():
            failed = self.checked_for_write(request, pk)
            failed = services.failed_integration_update(
                failed=failed, payload=request.data, partial=partial
            )
        return self.record_response(failed)

    def delete(self, request, channel_id: int, pk: int):
        with transaction.atomic():
            services.failed_integration_delete(failed=self.checked_for_write(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def checked_for_write(self, request, pk: int) -> FailedIntegration:
        """The record, locked for the write when the client made it conditional."""
        if_match = request.META.get("HTTP_IF_MATCH")
        if not if_match:
            return self.get_failed_integration(pk)
        failed = selectors.failed_integration_get(channel=self.channel, pk=pk, for_update=True)
        if failed is None:
            raise NotFound(FAILED_INTEGRATION_NOT_FOUND)
        tags = {tag.strip() for tag in if_match.split(",")}
        if "*" not in tags and etag(failed.pk, failed.modified_date) not in tags:
            raise PreconditionFailed()
        return failed

    def record_response(self, failed: FailedIntegration) -> Response:
        response = Response(self.data(failed))
        response["ETag"] = etag(failed.pk, failed.modified_date)
        return response


def action_options(request) -> dict[str, bool]:
    """`reset_count` of a record action's (optional) body, false by default; any other key
    answers 400 naming it."""
    data = request.data if request.stream is not None else {}
    if not isinstance(data, dict):
        raise ValidationError(
            {"non_field_errors": [f"Expected an object, but got {type(data).__name__}."]}
        )
    errors = {name: ["Unknown field; the body takes reset_count."] for name in data}
    errors.pop("reset_count", None)
    reset_count = data.get("reset_count", False)
    if not isinstance(reset_count, bool):
        errors["reset_count"] = ["Must be a boolean (true or false)."]
    if errors:
        raise ValidationError(errors)
    return {"reset_count": reset_count}


class FailedIntegrationBulkActionView(ChannelScopedView):
    """`POST .../failed_integrations/{retry,park,unpark,deactivate}/?<list filters>`: the
    action on every record the filters match, and only on those (`operations.bulk`): options
    `dry_run`, `all`, `confirm` and `reset_count` (retry), in the query string or the body."""

    body_required = False
    action_name = ""
    source = AuditEntry.Source.API

    def post(self, request, channel_id: int):
        body = request.data if request.stream is not None else {}
        asked = bulk.read_request(self.action_name, request.query_params, body)
        status_code, data = bulk.ask(
            channel=self.channel, user=request.user, request=asked, source=self.source
        )
        response = Response(data, status=status_code)
        if status_code == status.HTTP_202_ACCEPTED:
            response["Location"] = data["operation"]["url"]
        return response


class FailedIntegrationActionView(ChannelScopedView):
    """`POST .../{id}/{retry,park,unpark}/`: the action on one record; answers the record."""

    body_required = False
    action_name = ""

    def post(self, request, channel_id: int, pk: int):
        options = action_options(request)
        if options["reset_count"] and self.action_name != "retry":
            raise ValidationError({"reset_count": [bulk.RETRY_ONLY]})
        failed = record_action(
            failed=self.get_failed_integration(pk),
            action=self.action_name,
            user=request.user,
            source=AuditEntry.Source.API,
            reset_count=options["reset_count"],
        )
        return Response(self.data(failed))


class FailedIntegrationAttemptsView(ChannelScopedView):
    """Every attempt the engine made for one record, oldest first."""

    def get(self, request, channel_id: int, pk: int):
        failed = self.get_failed_integration(pk)
        return paginated_response(
            request,
            RetryAttempt.objects.filter(failed_integration=failed).order_by("number"),
            lambda attempt: attempt_data(attempt, shows_errors=self.shows_errors),
        )


def attempt_data(attempt: RetryAttempt, *, shows_errors: bool = True) -> dict:
    return {
        "number": attempt.number,
        "started_at": format_datetime_utc(attempt.started_at),
        "finished_at": format_datetime_utc(attempt.finished_at),
        "outcome": attempt.outcome or None,
        "http_status": attempt.http_status,
        "error": attempt.error if shows_errors else "",
        "worker": attempt.worker,
        "idempotency_key": attempt.idempotency_key,
    }


class OperationListView(ChannelScopedView):
    """The channel's bulk actions that acted or are acting, newest first."""

    def get(self, request, channel_id: int):
        operations = (
            BulkAction.objects.filter(channel=self.channel)
            .exclude(status=BulkAction.Status.PREVIEWED)
            .select_related("user")
            .order_by("-pk")
        )
        return paginated_response(request, operations, bulk.operation_data)


class OperationDetailView(ChannelScopedView):
    """One bulk action: its progress, then its final counts."""

    def get(self, request, channel_id: int, pk: int):
        operation = (
            BulkAction.objects.filter(channel=self.channel, pk=pk)
            .exclude(status=BulkAction.Status.PREVIEWED)
            .select_related("user")
            .first()
        )
        if operation is None:
            raise NotFound("Operation not found.")
        return Response(bulk.operation_data(operation))


class FailedIntegrationExportView(ChannelScopedView):
    """`GET .../failed_integrations/export/?format=csv|ndjson&<the list's filters and sort>`:
    every matching record, streamed."""

    def get(self, request, channel_id: int):
        return export.export_response(
            self.channel, request.query_params, shows_errors=self.shows_errors
        )
