"""The benchmark's user (a superuser) and its tokens; prints the key on stdout.

    python -m bench.auth ours      with DJANGO_SETTINGS_MODULE=config.settings: a key of the
                                   service's own tokens (accounts.services.token_create)
    python -m bench.auth obvious   with DJANGO_SETTINGS_MODULE=bench.peers.obvious.settings: the key
                                   of DRF's stock rest_framework.authtoken Token of the same user
    python -m bench.auth defaults  with DJANGO_SETTINGS_MODULE=config.settings: the models'
                                   constant defaults as JSON {table: {column: value}}, for the
                                   seeder's columns that are required but not named by it

The floor peer checks the service's tokens itself, so it takes the key of `ours`.
"""

from __future__ import annotations

import json
import sys

import django

USERNAME = "bench"
TOKEN_NAME = "bench/run"  # noqa: S105 - a label, not a secret


def staff_user():
    from django.contrib.auth import get_user_model

    # A superuser: it may read and write every channel in every revision the benchmark serves
    # (before roles, staff could; since, a superuser or a global role can).
    user, _ = get_user_model().objects.get_or_create(
        username=USERNAME, defaults={"is_staff": True, "is_superuser": True, "is_active": True}
    )
    if not (user.is_staff and user.is_superuser and user.is_active) or user.has_usable_password():
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_unusable_password()
        user.save()
    return user


def ours_key() -> str:
    from accounts.models import Token
    from accounts.services import token_create

    user = staff_user()
    # One key per run: the keys of earlier runs are of no use any more.
    Token.objects.filter(user=user, name=TOKEN_NAME).delete()
    return token_create(user=user, name=TOKEN_NAME)[1]


def obvious_key() -> str:
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=staff_user())
    return token.key


def model_defaults() -> str:
    from integrations.models import Channel, FailedIntegration

    defaults: dict[str, dict[str, object]] = {}
    for model in (Channel, FailedIntegration):
        columns = defaults.setdefault(model._meta.db_table, {})
        for field in model._meta.concrete_fields:
            if field.has_default() and not callable(field.default):
                value = field.get_default()
                if isinstance(value, bool | int | float | str):
                    columns[field.column] = value
    return json.dumps(defaults)


COMMANDS = {"ours": ours_key, "obvious": obvious_key, "defaults": model_defaults}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    django.setup()
    print(COMMANDS[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
