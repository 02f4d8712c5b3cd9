from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import token_create


class Command(BaseCommand):
    help = "Creates an API token for a user (creating the user with --create) and prints its key."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--create", action="store_true", help="create the user if it does not exist"
        )
        parser.add_argument(
            "--role",
            choices=("viewer", "operator", "admin"),
            help="give the user this role on every channel (see manage.py grant)",
        )
        parser.add_argument(
            "--staff", action="store_true", help="the same as --role operator (before roles)"
        )
        parser.add_argument(
            "--password", default=None, help="with --create: a password for the login endpoint"
        )
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument(
            "--expires-in", type=int, default=None, metavar="SECONDS", help="token lifetime"
        )

    def handle(
        self,
        *args,
        username: str,
        create: bool,
        role: str | None,
        staff: bool,
        password: str | None,
        name: str,
        expires_in: int | None,
        **options,
    ):
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"No user {username!r}; pass --create to create it.")
            user = user_model(username=username)
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
        elif not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        if expires_in is not None and expires_in <= 0:
            raise CommandError("--expires-in must be a positive number of seconds.")
        role = role or ("operator" if staff else None)
        if role:
            from integrations.models import ChannelGrant

            ChannelGrant.objects.update_or_create(user=user, channel=None, defaults={"role": role})
        ttl = dt.timedelta(seconds=expires_in) if expires_in else None
        _, key = token_create(user=user, name=name, ttl=ttl)
        self.stdout.write(key)
