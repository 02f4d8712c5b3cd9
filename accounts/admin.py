from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from .models import Token


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    """Tokens are seen and revoked here, never changed: un-revoking a key, extending it or
    moving it to another user would keep a key alive that its owner believes dead."""

    list_display = (
        "prefix",
        "user",
        "name",
        "created_date",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix", "name")
    fields = readonly_fields = list_display
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A key is shown only once, so tokens are created by the command or the login endpoint.
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        updated = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{updated} token(s) revoked.")
