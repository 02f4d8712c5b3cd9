"""A user's tokens die with the password they were got with: a password change (in the admin,
by `changepassword`, or anywhere `set_password` is saved) revokes every token of the user, as
it ends their sessions. A login that only re-hashes the same password revokes nothing."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from common.logs import bounded

from .models import Token
from .throttle import client_address

logger = logging.getLogger("accounts.login")

# Enough of a username to tell attempts apart; a password typed there is not logged whole.
USERNAME_SHOWN = 32


@receiver(user_login_failed)
def _log_failed_login(sender, credentials, request=None, **kwargs):
    """Every failed login, the API's and the admin's, as one line: a bounded, escaped
    username and the client's address."""
    username = credentials.get(get_user_model().USERNAME_FIELD, credentials.get("username", ""))
    address = client_address(request) if request is not None else "-"
    logger.warning(
        "failed login for username %s from %s", bounded(username, USERNAME_SHOWN), address
    )


@receiver(pre_save, sender=get_user_model())
def _note_password_change(sender, instance, update_fields=None, **kwargs):
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is None or stored == instance.password:
        return
    raw = getattr(instance, "_password", None)  # set by set_password until the save
    instance._revoke_tokens = raw is None or not check_password(raw, stored)


@receiver(post_save, sender=get_user_model())
def _revoke_tokens_after_password_change(sender, instance, created, **kwargs):
    if getattr(instance, "_revoke_tokens", False):
        instance._revoke_tokens = False
        Token.objects.filter(user=instance, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
