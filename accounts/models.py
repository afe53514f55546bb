"""Users, roles and revoked access tokens."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, Permission
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from accounts.permissions import HELIOS_PERMISSIONS

ALL_KEYS = "~*"


def validate_key_patterns(value: str) -> None:
    """Redis-ACL style: space-separated globs, each written ~pattern (for example `~* ~app:*`)."""
    for pattern in value.split():
        if not pattern.startswith("~") or len(pattern) == 1:
            raise ValidationError(f"{pattern!r} is not a key pattern: write ~glob, for example ~app:*")


class Role(models.Model):
    """A named set of permissions plus the KV keys its holders may read and write."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    permissions = models.ManyToManyField(Permission, blank=True, related_name="helios_roles")
    read_key_patterns = models.CharField(
        max_length=1024,
        default=ALL_KEYS,
        blank=True,
        validators=[validate_key_patterns],
        help_text="Keys holders may read, Redis-ACL style: ~glob separated by spaces. Empty means none.",
    )
    write_key_patterns = models.CharField(
        max_length=1024,
        default=ALL_KEYS,
        blank=True,
        validators=[validate_key_patterns],
        help_text="Keys holders may write, Redis-ACL style: ~glob separated by spaces. Empty means none.",
    )
    # Rate limit overrides (gateway.rate_limit.default_* when empty). A user with several roles gets
    # the most generous of their roles' policies.
    rate_limit_capacity = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests in a burst (bucket size). Empty: gateway.rate_limit.default_capacity.",
    )
    rate_limit_rate_num = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Refill: this many requests ... Empty: gateway.rate_limit.default_rate_num.",
    )
    rate_limit_rate_den = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="... per this many seconds. Empty: gateway.rate_limit.default_rate_den.",
    )

    class Meta:
        ordering = ["name"]
        permissions = HELIOS_PERMISSIONS

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """HELIOS's user: Django's, plus roles."""

    roles = models.ManyToManyField(Role, blank=True, related_name="users")


class RevokedAccessToken(models.Model):
    """An access token revoked before it expires (at logout); kept until it would have expired."""

    jti = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.jti
