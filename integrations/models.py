from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.validators import MaxValueValidator, MinLengthValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from integrations.choices import (
    AttemptOutcome,
    Backoff,
    ChannelType,
    ReasonType,
    Resolution,
    Role,
)
from integrations.dispatch.endpoints import validate_endpoint

# A signing secret shorter than this is refused (the admin, the API, the commands).
MIN_SECRET_LENGTH = 16


class Channel(models.Model):
    """A sales channel (marketplace, web shop, ...) that objects are pushed to."""

    name = models.CharField(max_length=255)
    channel_type = models.CharField(
        max_length=32, choices=ChannelType.choices, default=ChannelType.MARKETPLACE
    )
    is_active = models.BooleanField(default=True)
    # Where the retry engine posts a failed integration to have it retried (optional; the
    # rules of dispatch/endpoints.py, checked again when connecting).
    retry_endpoint = models.URLField(
        max_length=1024, blank=True, default="", validators=[validate_endpoint]
    )
    # Secret for the HMAC-SHA256 signature of retry requests (optional; write-only, replaced
    # by dispatch/signing.rotate, which keeps the previous one signing for an overlap).
    signing_secret = models.CharField(
        max_length=255, blank=True, default="", validators=[MinLengthValidator(MIN_SECRET_LENGTH)]
    )
    previous_signing_secret = models.CharField(max_length=255, blank=True, default="")
    previous_secret_valid_until = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # Delivery protection (dispatch/protection.py), across every worker: the most attempts in
    # flight to the channel app, and attempts per second; empty: no cap.
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(10_000)]
    )
    rate_limit = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.01), MaxValueValidator(10_000.0)]
    )
    # Until when nothing is sent to the channel app: the far future while its circuit is open or
    # it is paused, a Retry-After's time while the app asked to wait. Its due records are then
    # `held` (lifecycle/states.py). Kept by dispatch/protection.py alone.
    dispatch_held_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class IntegrationAction(models.Model):
    """The link between a local object and its twin on a channel."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.PositiveBigIntegerField()
    remote_id = models.CharField(max_length=256, null=True, blank=True)
    version_date = models.DateTimeField(null=True, blank=True)
    state = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=64, blank=True, default="")
    created_date = models.DateTimeField(auto_now_add=True)
    modified_date = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "content_type", "object_id"],
                name="integration_action_unique_object_per_channel",
            )
        ]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} on channel {self.channel_id}"


# What the counts by state read of the records whose state the time decides, besides the
# condition's own columns: the group keys and the columns of their untimed state.
TIMED_INCLUDE = ["reason_type", "content_type", "parked", "exhausted"]


# Retries have run out when the first is at least the second (the `exhausted` column's rule,
# which a write derived from the row as written uses too).
EXHAUSTED_RULE = ("retry_count", "max_retry_count")


class FailedIntegration(models.Model):
    """An object that did not reach a channel, and how it may be retried.

    Every list query is scoped to one channel, so the indexes lead with the channel and end
    with the pk (the tie-breaker of every sort): one index per sortable field serves its sort and
    its range filters, and one per filterable field lets PostgreSQL find rare values without
    walking the channel.
    """

    # The channel-leading indexes below serve lookups by channel.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", db_index=False)
    version_date = models.DateTimeField(db_index=True)
    reason_type = models.CharField(max_length=15, choices=ReasonType.choices)
    is_active = models.BooleanField(default=True)
    content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    object_id = models.PositiveBigIntegerField()
    expiration_date = models.DateTimeField(null=True, blank=True)
    # Integers are bounded by their storage type (records.registry), on every database.
    retry_count = models.PositiveIntegerField(default=1)
    max_retry_count = models.PositiveIntegerField(default=1)
    retry_interval = models.PositiveIntegerField(default=0)
    integration_action = models.ForeignKey(
        IntegrationAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    log_id = models.PositiveBigIntegerField(null=True, blank=True)
    # Set by the services when a record is made (the retry schedule starts from it).
    created_date = models.DateTimeField(default=timezone.now, editable=False)
    modified_date = models.DateTimeField(auto_now=True)
    # Retries have run out: kept by the database, so that it can be indexed and counted.
    exhausted = models.GeneratedField(
        expression=Q(**{f"{EXHAUSTED_RULE[0]}__gte": F(EXHAUSTED_RULE[1])}),
        output_field=models.BooleanField(),
        db_persist=True,
    )

    # --- the retry engine (see engine.py); none of these is written by the contract's fields
    # Parked: not retried automatically while a fix is made.
    parked = models.BooleanField(default=False)
    # Why an inactive record is no longer retried, and since when.
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    # When the engine will next dispatch it; null: it will not on its own.
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # An operator asked for an attempt (the retry action) that has not been made yet: the one
    # way an exhausted record is sent (lifecycle.states.RETRIES_LEFT); its outcome clears it.
    retry_by_hand = models.BooleanField(default=False, db_default=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # The worker holding it while an attempt runs, until when (a crashed worker's lease lapses).
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["channel", "content_type", "object_id"], name="fi_channel_object"),
            models.Index(fields=["channel", "id"], name="fi_channel_pk"),
            *(
                models.Index(fields=["channel", name, "id"], name=f"fi_channel_{short}")
                for name, short in (
                    ("version_date", "version"),
                    ("expiration_date", "expiration"),
                    ("retry_count", "retries"),
                    ("max_retry_count", "max_retries"),
                    ("retry_interval", "interval"),
                    ("created_date", "created"),
                    ("modified_date", "modified"),
                    ("reason_type", "reason"),
                    ("is_active", "active"),
                    ("exhausted", "exhausted"),
                )
            ),
            models.Index(fields=["channel", "object_id"], name="fi_channel_object_id"),
            models.Index(fields=["channel", "log_id"], name="fi_channel_log"),
            models.Index(fields=["channel", "parked", "id"], name="fi_channel_parked"),
            # What the workers claim: only scheduled records are in it.
            models.Index(
                fields=["next_retry_at"],
                name="fi_scheduled",
                condition=Q(next_retry_at__isnull=False),
            ),
            # The active records whose state the time decides (due, leased, past their expiry),
            # with what the counts by state read of them (counting, reads.selectors), so that
            # those reads never visit the table. (Indexing the lease makes a worker's claim a
            # non-HOT update; its batch's finish was one already.) The first is also the
            # console's due backlog.
            models.Index(
                fields=["channel", "next_retry_at", "id"],
                name="fi_channel_due",
                condition=Q(is_active=True, parked=False, next_retry_at__isnull=False),
                include=[*TIMED_INCLUDE, "expiration_date", "lease_expires_at", "retry_by_hand"],
            ),
            models.Index(
                fields=["channel", "lease_expires_at"],
                name="fi_channel_leased",
                condition=Q(is_active=True, lease_expires_at__isnull=False),
                include=[*TIMED_INCLUDE, "expiration_date"],
            ),
            models.Index(
                fields=["channel", "expiration_date"],
                name="fi_channel_expiring",
                condition=Q(is_active=True, expiration_date__isnull=False),
                include=TIMED_INCLUDE,
            ),
            # A channel's records resolved per hour (the console's chart).
            models.Index(
                fields=["channel", "resolved_at", "id"],
                name="fi_channel_resolved",
                condition=Q(resolved_at__isnull=False),
            ),
            # What retention purges and expiry deactivates.
            models.Index(
                fields=["modified_date"], name="fi_inactive", condition=Q(is_active=False)
            ),
            models.Index(
                fields=["expiration_date"],
                name="fi_active_expiring",
                condition=Q(is_active=True, expiration_date__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reason_type} failure of {self.content_type_id}:{self.object_id}"


class RetryPolicy(models.Model):
    """How records of one reason type are retried on one channel.

    Without a policy: `mapping` is not retried automatically (a person fixes the mapping, then
    retries it or updates the record), `remote` and `channel_app` are, every retry_interval.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="retry_policies")
    reason_type = models.CharField(max_length=15, choices=ReasonType.choices)
    auto_retry = models.BooleanField(default=True)
    backoff = models.CharField(max_length=16, choices=Backoff.choices, default=Backoff.FIXED)
    backoff_factor = models.FloatField(
        default=2.0, validators=[MinValueValidator(1.0), MaxValueValidator(10.0)]
    )
    # The longest wait between two attempts, in seconds (exponential backoff): up to 30 days.
    max_delay = models.PositiveIntegerField(
        default=24 * 3600, validators=[MaxValueValidator(30 * 24 * 3600)]
    )
    # Up to this fraction of the wait is added at random, so that retries spread out.
    jitter = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )

    class Meta:
        ordering = ["channel", "reason_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "reason_type"], name="retry_policy_unique_per_reason"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reason_type} on channel {self.channel_id}"


class RetryAttempt(models.Model):
    """One dispatch of a failed integration to its channel app."""

    failed_integration = models.ForeignKey(
        FailedIntegration, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=64, unique=True)
    worker = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["failed_integration", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.failed_integration_id}: {self.outcome}"


class ChannelDispatch(models.Model):
    """What the retry engine knows of a channel app, shared by every worker: its circuit
    breaker, a wait the app asked for (Retry-After), an operator's pause, and the token bucket of
    its rate limit (dispatch/protection.py)."""

    class Circuit(models.TextChoices):
        CLOSED = "closed", "Closed: attempts go"
        OPEN = "open", "Open: nothing goes until the next probe"
        HALF_OPEN = "half_open", "Half-open: one probe at a time"

    channel = models.OneToOneField(
        Channel, primary_key=True, on_delete=models.CASCADE, related_name="dispatch"
    )
    circuit = models.CharField(max_length=9, choices=Circuit.choices, default=Circuit.CLOSED)
    circuit_since = models.DateTimeField(null=True, blank=True)
    # The first opening since the circuit was last closed: a sustained outage disables.
    outage_since = models.DateTimeField(null=True, blank=True)
    cool_down = models.PositiveIntegerField(default=0)  # seconds, of the current opening
    next_probe_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    probe_successes = models.PositiveIntegerField(default=0)
    # Attempts that may be in flight to the app now (0: not yet known, BREAKER_FAILURES): grows
    # by one at each answer, halves at each of the app's failures, so that an app that is down
    # fails at most this many attempts before the breaker opens.
    send_window = models.PositiveIntegerField(default=0)
    # The failure ratio's window: attempts and the app's failures since it started.
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_attempts = models.PositiveIntegerField(default=0)
    window_failures = models.PositiveIntegerField(default=0)
    retry_after_until = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The token bucket of the rate limit, and the ramp of a drain after recovery.
    tokens = models.FloatField(default=0.0)
    tokens_at = models.DateTimeField(null=True, blank=True)
    recovering_since = models.DateTimeField(null=True, blank=True)
    # Three counts of a second's window (since `..._since`, a second or more; a window starts
    # again when a hold ends) and the rate of the window before: the attempts sent, the app's
    # answers other than a 429, and its 429s. Together they say what the app was taking when it
    # answered 429 (see `dispatch/protection.py`).
    sent_since = models.DateTimeField(null=True, blank=True)
    sent_count = models.PositiveIntegerField(default=0)
    sent_rate = models.FloatField(null=True, blank=True)
    answered_since = models.DateTimeField(null=True, blank=True)
    answered_count = models.PositiveIntegerField(default=0)
    answered_rate = models.FloatField(null=True, blank=True)
    refused_since = models.DateTimeField(null=True, blank=True)
    refused_count = models.PositiveIntegerField(default=0)
    refused_rate = models.FloatField(null=True, blank=True)
    # The rate the app's 429s taught (attempts/s, null: none), and when its last 429 came.
    learned_rate = models.FloatField(null=True, blank=True)
    learned_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dispatch of channel {self.channel_id}: {self.circuit}"


class WorkerHeartbeat(models.Model):
    """A retry worker that is running, or that stopped without saying so (it crashed or hangs):
    when it last went round its loop. A worker that stops cleanly removes its row; the metrics
    show each row's age, and the alert rules watch it."""

    name = models.CharField(max_length=64, primary_key=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"worker {self.name}, seen {self.seen_at:%Y-%m-%d %H:%M:%S}"


class EngineEvent(models.Model):
    """An event to tell the world about (retries ran out), sent by the worker: an outbox, so
    that it is recorded in the same transaction as what caused it and sent at least once."""

    kind = models.CharField(max_length=32)
    # Empty for a channel's events (its circuit opened or closed, it was disabled).
    failed_integration = models.ForeignKey(
        FailedIntegration, on_delete=models.CASCADE, related_name="+", null=True, blank=True
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    # What makes it unique: one exhaustion event per record and retry count.
    key = models.CharField(max_length=128, unique=True)
    payload = models.JSONField()
    created_date = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    next_delivery_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["next_delivery_at"],
                name="engine_event_undelivered",
                condition=Q(delivered_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.failed_integration_id}"


class ChannelGrant(models.Model):
    """A user's role on one channel, or on every channel (no channel: a global role). Without
    a grant, only superusers see a channel (`api/access.py`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="channel_grants"
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        related_name="grants",
        null=True,
        blank=True,
        help_text="Leave empty for a role on every channel.",
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    created_date = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["user", "channel"], name="channel_grant_unique"),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(channel__isnull=True),
                name="channel_grant_one_global_role",
            ),
        ]

    def __str__(self) -> str:
        where = f"channel {self.channel_id}" if self.channel_id else "every channel"
        return f"{self.user}: {self.role} on {where}"


class BulkAction(models.Model):
    """An operator action on the records a filter matched: previewed (a dry run, waiting to be
    confirmed with its token), or acted on, in batches, over exactly the records it matched when
    it was asked for (their pks are kept: `operations.bulk`)."""

    class Status(models.TextChoices):
        PREVIEWED = "previewed"
        # A canary retry: its first records were retried; the rest wait for their outcome.
        CANARY = "canary"
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=16)
    # The filters, as the query string that gave them (canonical order).
    filters = models.TextField(blank=True, default="")
    reset_count = models.BooleanField(default=False)
    # A canary retry: this many of the records are retried first; the rest only once they all
    # succeeded (operations.bulk). 0: no canary.
    canary = models.PositiveIntegerField(default=0)
    canary_pks = models.BinaryField(default=b"")  # the canaries retried (packed)
    canary_started_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    # A preview's confirmation token, as its SHA-256 (the token itself is shown once).
    token_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The matched records' pks (operations.bulk.pack), how many, and how far the work is.
    pks = models.BinaryField(default=b"")
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    affected = models.PositiveIntegerField(default=0)
    no_longer_matched = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker running it, until when (a crashed worker's lease lapses, another resumes).
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="bulk_action_waiting",
                condition=Q(status__in=["queued", "running", "canary"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} of {self.total} on channel {self.channel_id}: {self.status}"


class AuditEntry(models.Model):
    """One operator action, single or bulk, dry runs included: who, when, where, what, on
    which filters, and what came of it."""

    class Source(models.TextChoices):
        API = "api"
        CONSOLE = "console"
        ADMIN = "admin"
        COMMAND = "command"

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept when the user is deleted.
    username = models.CharField(max_length=150, blank=True, default="")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=16)
    source = models.CharField(max_length=16, choices=Source.choices)
    # The filters as a query string, or the one record's pk.
    filters = models.TextField(blank=True, default="")
    record = models.PositiveBigIntegerField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    reset_count = models.BooleanField(default=False)
    matched = models.PositiveIntegerField(default=0)
    affected = models.PositiveIntegerField(default=0)
    # done, queued, running, failed, or refused (a confirmation that did not hold)
    outcome = models.CharField(max_length=16)
    bulk_action = models.ForeignKey(
        BulkAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["channel", "at"], name="audit_channel_at"),
            models.Index(fields=["user", "at"], name="audit_user_at"),
            models.Index(fields=["at"], name="audit_at"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.username} {self.action} on channel {self.channel_id} at {self.at}"


class IdempotencyKey(models.Model):
    """A report's `Idempotency-Key` (see `records/idempotency.py`): within
    IDEMPOTENCY_KEY_HOURS, a repeat of the request answers its first answer again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # The SHA-256 of the route and the JSON body: a repeat with another is refused.
    fingerprint = models.CharField(max_length=64)
    # The records the request stored, in its order, and its answer once written (the records
    # are answered as they are now should it not have been).
    record_ids = models.JSONField(default=list)
    answer = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "channel", "key"], name="idempotency_key_unique"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"{self.key} of user {self.user_id} on channel {self.channel_id}"
