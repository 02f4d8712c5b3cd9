"""The audit log: every operator action, single or bulk, dry runs included, from the API, the
console, the admin site or a command (`AuditEntry`)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from integrations.models import AuditEntry, BulkAction


def audit(
    *,
    user: AbstractBaseUser | None,
    channel_id: int,
    action: str,
    source: str,
    outcome: str,
    filters: str = "",
    record: int | None = None,
    dry_run: bool = False,
    reset_count: bool = False,
    matched: int = 0,
    affected: int = 0,
    bulk_action: BulkAction | None = None,
) -> AuditEntry:
    known = user is not None and user.is_authenticated
    return AuditEntry.objects.create(
        user=user if known else None,
        username=user.get_username() if known else "",
        channel_id=channel_id,
        action=action,
        source=source,
        filters=filters,
        record=record,
        dry_run=dry_run,
        reset_count=reset_count,
        matched=matched,
        affected=affected,
        outcome=outcome,
        bulk_action=bulk_action,
    )


def audit_finished(bulk: BulkAction) -> None:
    """A bulk action's entry, once its work has ended."""
    AuditEntry.objects.filter(bulk_action=bulk, dry_run=False).update(
        outcome=bulk.status, affected=bulk.affected
    )
