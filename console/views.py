"""The operator console: server-rendered pages over the API's own selectors, services, filters
and rules (`integrations`), with the same users and roles, by session.

Every page of a channel answers 404 for a channel the user may not read, as the API does; a
write beyond the user's role answers 403 and the page shows no control for it. The filters of
the failures page are the API's query parameters, so that its URL is the API's query.
"""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import APIException, ValidationError

from accounts.throttle import login_wait
from integrations.api.access import ADMIN, ROLE_OF, WRITE, allows, channel_access, readable_channels
from integrations.api.audit import audit_entries
from integrations.api.channels import ChannelSerializer
from integrations.channels import services as channel_services
from integrations.choices import ReasonType, State
from integrations.dispatch.ping import send_ping
from integrations.dispatch.signing import secret_status
from integrations.lifecycle.states import dispatch_of
from integrations.lifecycle.transitions import OPERATOR_ACTIONS
from integrations.models import AuditEntry, BulkAction, Channel, EngineEvent, FailedIntegration
from integrations.operations import bulk
from integrations.operations.audit import audit
from integrations.operations.single import record_action
from integrations.reads import export, selectors
from integrations.reads.cursor import CURSOR_PARAM
from integrations.reads.filtersets import (
    SORT_FIELDS,
    BooleanFilter,
    ChoiceFilter,
    DateTimeFilter,
    IntegerFilter,
)
from integrations.reads.query import FILTERS
from integrations.records import services
from integrations.records.representation import (
    etag,
    failed_integration_data,
    failed_integrations_data,
)

from . import summaries

PAGE_SIZES = (25, 50, 100, 250)
TYPED_CONFIRMATION_ABOVE = 1000
GROUP_BY = "state,reason_type,content_type"
# The actions that apply to records in each state (what `transitions.eligible_for` acts on).
ACTIONS_FOR_STATE = {
    State.PENDING: ("retry", "park", "deactivate"),
    State.DUE: ("retry", "park", "deactivate"),
    State.IN_PROGRESS: ("park", "deactivate"),
    State.EXHAUSTED: ("retry", "park", "deactivate"),
    State.PARKED: ("retry", "unpark", "deactivate"),
    State.HELD: ("park", "deactivate"),
    State.EXPIRED: ("deactivate",),
}
BOOL_FILTERS = (
    ("is_active", "Active"),
    ("parked", "Parked"),
    ("exhausted", "Exhausted"),
    ("expired", "Expired"),
)
# The filters the form shows on its own; every other filter of the API is under "More filters".
OWN_CONTROLS = {
    "state__in",
    "reason_type__in",
    "content_type",
    "object_id__in",  # the pasted object ids
    *(name for name, _ in BOOL_FILTERS),
    "version_date__gte",
    "version_date__lt",
    "created_date__gte",
    "retry_count__gte",
}
LOOKUP_LABELS = {
    "": "",
    "in": "in (comma-separated)",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "isnull": "is empty",
}


def more_filters(params: QueryDict) -> list[dict]:
    """A control for each filter of the API that the form does not show on its own, from the
    filters themselves: a new filter gets its control without an edit here."""
    controls = []
    for name, flt in FILTERS.items():
        if name in OWN_CONTROLS or name == "sort":
            continue
        field, _, lookup = name.partition("__")
        control = {
            "name": name,
            "label": f"{field.replace('_', ' ')} {LOOKUP_LABELS.get(lookup, lookup)}".strip(),
            "value": params.get(name, ""),
            "options": None,
            "numeric": isinstance(flt, IntegerFilter),
            "placeholder": "2025-06-27T00:00:00Z" if isinstance(flt, DateTimeFilter) else "",
        }
        if isinstance(flt, BooleanFilter):
            control["options"] = [("true", "yes"), ("false", "no")]
        elif isinstance(flt, ChoiceFilter) and lookup != "in":
            control["options"] = list(flt.extra["choices"])
        controls.append(control)
    return controls


ACTION_LABELS = {
    "retry": "Retry now",
    "park": "Park",
    "unpark": "Unpark",
    "deactivate": "Deactivate",
}


class LoginView(auth_views.LoginView):
    """The console's login, throttled with the API's and the admin's (`login_wait`)."""

    template_name = "console/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        wait = login_wait(request)
        if wait is not None:
            seconds = math.ceil(wait)
            response = render(request, "console/login.html", {"throttled": seconds}, status=429)
            response["Retry-After"] = str(seconds)
            return response
        return super().post(request, *args, **kwargs)


def channel_for(request, channel_id: int, needed: str | None = None) -> tuple[Channel, str]:
    """The channel and the user's access to it: 404 when the user may not read it, 403 when
    `needed` is beyond the user's role."""
    channel = selectors.channel_get(channel_id=channel_id)
    access = channel_access(request.user, channel.pk) if channel is not None else None
    if access is None:
        raise Http404("Channel not found.")
    if needed is not None and not allows(access, needed):
        raise PermissionDeniedPage
    return channel, access


class PermissionDeniedPage(Exception):
    pass


def refuse(request) -> HttpResponse:
    return render(
        request,
        "console/denied.html",
        {"message": "Your role on this channel does not allow it."},
        status=403,
    )


def channel_context(channel: Channel, access: str) -> dict:
    return {
        "channel": channel,
        "access": access,
        "role": ROLE_OF[access],
        "may_write": allows(access, WRITE),
        "may_admin": allows(access, ADMIN),
    }


def guarded(view):
    """A console view: logged in, and a refused write answered as a page."""

    @login_required
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except PermissionDeniedPage:
            return refuse(request)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


# --- the overview


@guarded
@require_GET
def overview(request):
    channels = readable_channels(request.user).order_by("pk")
    cards = [summaries.summary(channel, summaries_role(channel)) for channel in channels]
    context = {"cards": cards, "live_states": summaries.LIVE_STATES, "reasons": ReasonType}
    template = "console/_overview_cards.html" if request.htmx else "console/overview.html"
    return render(request, template, context)


def summaries_role(channel) -> str:
    access = [level for level in ("admin", "write", "read") if getattr(channel, f"may_{level}")]
    return ROLE_OF[access[0]]


# --- the failures of a channel


def filter_params(params: QueryDict) -> QueryDict:
    """The filters and sort of a query string (the list's parameters; the rest dropped)."""
    kept = QueryDict(mutable=True)
    for name in params:
        if name in FILTERS or name == "sort":
            values = [value for value in params.getlist(name) if value != ""]
            if values:
                kept.setlist(name, values)
    return kept


def without(params: QueryDict, *names: str) -> str:
    copy = params.copy()
    for name in names:
        copy.pop(name, None)
    return copy.urlencode()


@guarded
@require_GET
def failures(request, channel_id: int):
    channel, access = channel_for(request, channel_id)
    params = filter_params(request.GET)
    # Object search: several ids pasted at once (spaces, commas or lines).
    pasted = request.GET.get("objects", "").replace(",", " ").split()
    if pasted:
        params["object_id__in"] = ",".join(pasted)
    limit = request.GET.get("limit", "")
    limit = int(limit) if limit.isdigit() and int(limit) in PAGE_SIZES else PAGE_SIZES[0]
    query = params.copy()
    query["limit"] = str(limit)
    query[CURSOR_PARAM] = request.GET.get(CURSOR_PARAM) or "*"
    errors, records, count, next_cursor, groups = {}, [], 0, None, None
    try:
        # The group panel counts the matching records: the list takes its total from it.
        grouped = params.copy()
        grouped["group_by"] = GROUP_BY
        groups = selectors.failed_integration_stats(channel=channel, params=grouped)
        source = selectors.failed_integration_list_source(
            channel=channel, params=query, count=groups["count"]
        )
        rows = list(source.queryset[: limit + 1])
        count = source.count
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = source.cursor.encode(getattr(last, source.cursor.field), last.pk)
        shows_errors = allows(access, WRITE)
        records = [
            data | {"content_type_name": selectors.content_type_name(data["content_type"])}
            for data in failed_integrations_data(
                rows[:limit], channel=channel, shows_errors=shows_errors
            )
        ]
    except ValidationError as error:
        errors = error.detail
    states_present = {row["state"] for row in groups["results"]} if groups else set()
    offered = [
        action
        for action in OPERATOR_ACTIONS
        if any(action in ACTIONS_FOR_STATE.get(state, ()) for state in states_present)
    ]
    for row in groups["results"] if groups else []:
        link = params.copy()
        for key in ("state", "reason_type", "content_type"):
            link[key] = str(row[key])
        row["link"] = link.urlencode()
    more = more_filters(params)
    context = {
        "dispatch": channel_services.dispatch_health(channel),
        **channel_context(channel, access),
        "params": params,
        "query": params.urlencode(),
        "errors": errors,
        "records": records,
        "count": count,
        "limit": limit,
        "page_sizes": PAGE_SIZES,
        "next_query": f"{without(params, CURSOR_PARAM)}&limit={limit}&cursor={next_cursor}"
        if next_cursor
        else None,
        "groups": groups["results"] if groups else [],
        "offered": [(action, ACTION_LABELS[action]) for action in offered],
        "states": State,
        "reasons": ReasonType,
        "sort_fields": SORT_FIELDS,
        "filtered": bool([n for n in params if n != "sort"]),
        "objects": " ".join(pasted),
        "bool_filters": BOOL_FILTERS,
        "more_filters": more,
        "more_open": any(control["value"] for control in more),
        "checked": {
            name: {v for key in (name, f"{name}__in") for v in params.get(key, "").split(",") if v}
            for name in ("state", "reason_type")
        },
    }
    template = "console/_failures_body.html" if request.htmx else "console/failures.html"
    return render(request, template, context)


@guarded
@require_GET
def export_failures(request, channel_id: int):
    channel, access = channel_for(request, channel_id)
    try:
        return export.export_response(channel, request.GET, shows_errors=allows(access, WRITE))
    except ValidationError as error:
        return HttpResponse(str(error.detail), status=400, content_type="text/plain")


@guarded
@require_POST
def act(request, channel_id: int):
    """A bulk action from the failures page: previewed first (count and sample), then confirmed
    (the count typed when it is large); the API's rules and `operations.bulk` throughout."""
    channel, access = channel_for(request, channel_id, WRITE)
    action = request.POST.get("action", "")
    if action not in OPERATOR_ACTIONS:
        return render(
            request, "console/_act_result.html", {"error": "Choose an action."}, status=400
        )
    params = filter_params(request.GET)
    params.pop("sort", None)
    context = {**channel_context(channel, access), "action": action, "label": ACTION_LABELS[action]}
    scope = request.POST.get("scope", "all")
    selected = [pk for pk in request.POST.getlist("pk") if pk.isdigit()]
    if scope == "selected":
        if not selected:
            context["error"] = "Select the rows to act on first."
            return render(request, "console/_act_result.html", context, status=400)
        params["pk__in"] = ",".join(selected)
    token = request.POST.get("confirm", "")
    try:
        if not token:
            # "All N matching" with no filter is every record of the channel: said so, as the
            # API's all=true.
            body = {"dry_run": True, "all": scope == "all"}
            if action == "retry" and request.POST.get("reset_count") == "true":
                body["reset_count"] = True
            canary = request.POST.get("canary", "").strip()
            if action == "retry" and canary:
                body["canary"] = int(canary) if canary.isdigit() else canary
            asked = bulk.read_request(action, params, body)
            _, preview = bulk.ask(
                channel=channel, user=request.user, request=asked, source=AuditEntry.Source.CONSOLE
            )
            context |= {
                "preview": preview,
                "typed": preview["matched"] > TYPED_CONFIRMATION_ABOVE,
                "query": params.urlencode(),
            }
            return render(request, "console/_act_preview.html", context)
        previewed = bulk.previewed(token)
        large = previewed is not None and previewed.total > TYPED_CONFIRMATION_ABOVE
        if large and request.POST.get("typed", "").strip() != str(previewed.total):
            context["error"] = f"Type {previewed.total} to confirm acting on that many records."
            return render(request, "console/_act_result.html", context, status=400)
        asked = bulk.read_request(action, QueryDict(), {"confirm": token})
        _, result = bulk.ask(
            channel=channel, user=request.user, request=asked, source=AuditEntry.Source.CONSOLE
        )
    except ValidationError as error:
        context["error"] = "; ".join(
            f"{name}: {' '.join(map(str, messages_))}"
            if isinstance(messages_, list)
            else f"{name}: {messages_}"
            for name, messages_ in error.detail.items()
        )
        return render(request, "console/_act_result.html", context, status=400)
    context["result"] = result
    context["operation"] = result.get("operation")
    return render(request, "console/_act_result.html", context, status=200)


@guarded
@require_GET
def operation(request, channel_id: int, pk: int):
    """A bulk action's progress (the result panel polls it while it runs)."""
    channel, access = channel_for(request, channel_id)
    found = (
        BulkAction.objects.filter(channel=channel, pk=pk)
        .exclude(status=BulkAction.Status.PREVIEWED)
        .first()
    )
    if found is None:
        raise Http404("Operation not found.")
    context = {**channel_context(channel, access), "operation": bulk.operation_data(found)}
    return render(request, "console/_operation.html", context)


# --- one record


EDITABLE = ("max_retry_count", "retry_interval", "expiration_date")


@guarded
def failure(request, channel_id: int, pk: int):
    channel, access = channel_for(request, channel_id)
    record = selectors.failed_integration_get(channel=channel, pk=pk)
    if record is None:
        raise Http404("Failed integration not found.")
    context = {**channel_context(channel, access)}
    if request.method == "POST":
        if not allows(access, WRITE):
            return refuse(request)
        record, outcome = _change_record(request, record)
        context |= outcome
    shows_errors = allows(access, WRITE)
    data = failed_integration_data(record, **dispatch_of(channel), shows_errors=shows_errors)
    attempts = list(record.attempts.order_by("number"))
    history = (
        FailedIntegration.objects.filter(
            channel=channel, content_type_id=record.content_type_id, object_id=record.object_id
        )
        .exclude(pk=record.pk)
        .order_by("-version_date", "-pk")[:20]
    )
    actions = [
        (action, ACTION_LABELS[action])
        for action in OPERATOR_ACTIONS
        if action in ACTIONS_FOR_STATE.get(data["state"], ())
    ]
    context |= {
        "record": data,
        "instance": record,
        "attempts": [
            {
                "attempt": attempt,
                "duration": (attempt.finished_at - attempt.started_at).total_seconds()
                if attempt.finished_at
                else None,
                "error": attempt.error if shows_errors else "",
            }
            for attempt in attempts
        ],
        "events": EngineEvent.objects.filter(failed_integration=record).order_by("pk"),
        "history": history,
        "actions": actions,
        "etag": etag(record.pk, record.modified_date),
        "editable": EDITABLE,
    }
    return render(request, "console/failure.html", context)


def _change_record(request, record: FailedIntegration) -> tuple[FailedIntegration, dict]:
    """An action on the record, or an edit of its retry settings checked against the ETag the
    page was read with (a conflict is shown, never overwritten)."""
    action = request.POST.get("action")
    try:
        if action in OPERATOR_ACTIONS:
            record = record_action(
                failed=record,
                action=action,
                user=request.user,
                source=AuditEntry.Source.CONSOLE,
                reset_count=action == "retry" and request.POST.get("reset_count") == "true",
            )
            return record, {"notice": f"{ACTION_LABELS[action]}: done."}
        if action == "edit":
            with transaction.atomic():
                locked = FailedIntegration.objects.select_for_update().get(pk=record.pk)
                if etag(locked.pk, locked.modified_date) != request.POST.get("etag"):
                    return locked, {
                        "conflict": "The record changed since this page was read: nothing was "
                        "saved. Here it is as it is now; change it again if you still want to."
                    }
                payload = {
                    name: request.POST.get(name) for name in EDITABLE if name in request.POST
                }
                for name in ("max_retry_count", "retry_interval"):
                    if payload.get(name, "").lstrip("-").isdigit():
                        payload[name] = int(payload[name])
                if payload.get("expiration_date") == "":
                    payload["expiration_date"] = None
                record = services.failed_integration_update(
                    failed=locked, payload=payload, partial=True
                )
            return record, {"notice": "Saved."}
    except ValidationError as error:
        return record, {"field_errors": error.detail}
    except APIException as error:
        return record, {"conflict": str(error.detail)}
    return record, {"conflict": "Unknown action."}


# --- settings


@guarded
@require_POST
def dispatch_action(request, channel_id: int):
    """Pauses or resumes the channel's dispatch (its operators and admins)."""
    channel, _ = channel_for(request, channel_id, WRITE)
    action = request.POST.get("action")
    if action not in (channel_services.PAUSE, channel_services.RESUME):
        return HttpResponse("Unknown action: pause or resume.", status=400)
    channel_services.channel_hold(
        channel=channel, action=action, user=request.user, source=AuditEntry.Source.CONSOLE
    )
    messages.success(request, "Dispatch paused." if action == "pause" else "Dispatch resumed.")
    return redirect(reverse("console:failures", args=[channel.pk]))


@guarded
def settings_page(request, channel_id: int):
    channel, access = channel_for(request, channel_id, ADMIN)
    context = {**channel_context(channel, access)}
    if request.method == "POST":
        if request.POST.get("action") == "ping":
            result = send_ping(channel) if channel.retry_endpoint else None
            audit(
                user=request.user,
                channel_id=channel.pk,
                action="test_attempt",
                source=AuditEntry.Source.CONSOLE,
                outcome=result.outcome if result else "no endpoint",
            )
            context["ping"] = result
        else:
            changes = _settings_changes(request.POST)
            serializer = ChannelSerializer(channel, data=changes, partial=True)
            if serializer.is_valid():
                channel_services.channel_save(
                    channel=channel, changes=serializer.validated_data, user=request.user
                )
                messages.success(request, "Settings saved.")
                return redirect(reverse("console:settings", args=[channel.pk]))
            context["errors"] = serializer.errors
    context |= {
        "secret_status": secret_status(channel),
        "policies": channel_services.channel_policies(channel).items(),
        "backoffs": ("fixed", "exponential"),
    }
    return render(request, "console/settings.html", context)


def _settings_changes(post) -> dict:
    changes: dict = {
        "retry_endpoint": post.get("retry_endpoint", "").strip(),
    }
    for name in ("max_concurrency", "rate_limit"):
        if name in post:
            changes[name] = post[name].strip() or None
    if post.get("remove_signing_secret") == "true":
        changes["signing_secret"] = None
    elif post.get("signing_secret"):
        changes["signing_secret"] = post["signing_secret"]
    policies = {}
    for reason in ReasonType.values:
        if post.get(f"{reason}-default") == "true":
            policies[reason] = None
            continue
        policy = {"auto_retry": post.get(f"{reason}-auto_retry") == "true"}
        for name, cast in (
            ("backoff", str),
            ("backoff_factor", float),
            ("max_delay", int),
            ("jitter", float),
        ):
            raw = post.get(f"{reason}-{name}", "")
            try:
                policy[name] = cast(raw)
            except ValueError:
                policy[name] = raw
        policies[reason] = policy
    changes["retry_policies"] = policies
    return changes


# --- the audit log


@guarded
@require_GET
def audit_log(request):
    errors = {}
    try:
        entries = audit_entries(request.user, request.GET)
    except ValidationError as error:
        errors, entries = error.detail, AuditEntry.objects.none()
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "console/audit.html",
        {
            "page": page,
            "errors": errors,
            "params": request.GET,
            "query": without(request.GET, "page"),
            "channels": readable_channels(request.user).order_by("pk"),
            "now": timezone.now(),
        },
    )
