"""The channels an alert can go out on, built from the settings, and the routes over them."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fraudstream.alerts.mail import EmailChannel, SmtpOptions
from fraudstream.alerts.payload import Alert, DriftAlert
from fraudstream.alerts.routing import ChannelName, Routes, default_routes, load_routes
from fraudstream.alerts.webhook import WebhookChannel
from fraudstream.config import Settings

CONFIGURE_HINT = "set alerts_webhook_url, or alerts_smtp_host and alerts_email_to"


class Channel(Protocol):
    name: str

    def describe(self) -> str:
        """Where it sends, without secrets."""
        ...

    def send(self, alert: Alert | DriftAlert) -> None:
        """One try. Raises `fraudstream.errors.AlertError` when it did not go out."""
        ...

    def close(self) -> None:
        """Let go of kept connections (a later send opens what it needs)."""
        ...


def channels_from(settings: Settings) -> dict[ChannelName, Channel]:
    """The configured channels (none: neither a webhook URL nor an SMTP host is set).

    Raises:
        ConfigError: a channel is half configured (a webhook without secret, …).
    """
    out: dict[ChannelName, Channel] = {}
    if settings.alerts_webhook_url:
        out["webhook"] = WebhookChannel(
            settings.alerts_webhook_url,
            settings.alerts_webhook_secret,
            timeout_s=settings.alerts_webhook_timeout_s,
        )
    if settings.alerts_smtp_host:
        recipients = tuple(a.strip() for a in settings.alerts_email_to.split(",") if a.strip())
        out["email"] = EmailChannel(
            SmtpOptions(
                host=settings.alerts_smtp_host,
                recipients=recipients,
                sender=settings.alerts_email_from,
                port=settings.alerts_smtp_port,
                security=settings.alerts_smtp_security,
                user=settings.alerts_smtp_user,
                password=settings.alerts_smtp_password,
            )
        )
    return out


def routes_from(settings: Settings, configured: set[ChannelName]) -> Routes:
    """The routing file's routes (every channel they name must be configured), or the
    default route over the configured channels.

    Raises:
        ConfigError: the file is unreadable or wrong (naming the route and the field).
    """
    if not settings.alerts_file:
        return default_routes(configured)
    routes = load_routes(Path(settings.alerts_file))
    routes.check_configured(configured, CONFIGURE_HINT)
    return routes
