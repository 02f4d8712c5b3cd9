from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

from integrations.lifecycle.transitions import OPERATOR_ACTIONS
from integrations.models import AuditEntry, Channel
from integrations.operations import bulk


class Command(BaseCommand):
    help = (
        "Runs an operator action on the records of a channel that the list's filters match, by "
        "the API's rules (an unknown filter, or none without --all, is refused), and records it "
        "in the audit log. Prints the API's answer as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("channel", type=int)
        parser.add_argument("action", choices=OPERATOR_ACTIONS)
        parser.add_argument(
            "filters",
            nargs="?",
            default="",
            help="the list's filters as a query string, e.g. 'reason_type=remote&exhausted=true'",
        )
        parser.add_argument("--dry-run", action="store_true", help="preview only")
        parser.add_argument("--all", action="store_true", help="every record of the channel")
        parser.add_argument("--confirm", help="a dry run's token: act on what it previewed")
        parser.add_argument("--reset-count", action="store_true", help="retry: retry_count 0")
        parser.add_argument(
            "--canary",
            type=int,
            help="retry: this many first, the rest once they all succeeded",
        )
        parser.add_argument("--user", required=True, help="who acts (for the audit log)")

    def handle(
        self,
        *args,
        channel,
        action,
        filters,
        dry_run,
        all,
        confirm,
        reset_count,
        user,
        canary=None,
        **o,
    ):
        found = Channel.objects.filter(pk=channel).first()
        if found is None:
            raise CommandError(f"No channel {channel}.")
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"No user named {user!r}.")
        params = QueryDict(filters, mutable=True)
        body = {"dry_run": dry_run, "all": all, "reset_count": reset_count}
        if canary is not None:
            body["canary"] = canary
        if confirm:
            body["confirm"] = confirm
        try:
            asked = bulk.read_request(action, params, body)
        except ValidationError as error:
            raise CommandError(json.dumps(error.detail)) from None
        _, answer = bulk.ask(
            channel=found, user=actor, request=asked, source=AuditEntry.Source.COMMAND
        )
        self.stdout.write(json.dumps(answer, indent=2))
