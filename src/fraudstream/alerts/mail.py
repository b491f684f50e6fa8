"""The e-mail channel: stdlib ``smtplib``, one message per alert, plain text with an HTML
alternative; the subject names the outcome, the score and the amount."""

from __future__ import annotations

import html
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from fraudstream.alerts.payload import Alert, describe_amount
from fraudstream.errors import AlertError, ConfigError

Security = Literal["starttls", "tls", "plain"]
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "plain": 25}


@dataclass(frozen=True)
class SmtpOptions:
    host: str
    recipients: tuple[str, ...]
    sender: str = "fraudstream@localhost"
    port: int = 0
    """0 = the usual port of ``security``."""
    security: Security = "starttls"
    user: str = ""
    password: str = ""
    timeout_s: float = 10.0


class EmailChannel:
    name = "email"

    def __init__(self, options: SmtpOptions) -> None:
        """Raises:
        ConfigError: no recipient."""
        if not options.recipients:
            raise ConfigError("alerts_email_to", "required with alerts_smtp_host")
        self.options = options

    @property
    def port(self) -> int:
        return self.options.port or DEFAULT_PORTS[self.options.security]

    def describe(self) -> str:
        return f"smtp {self.options.host}:{self.port} ({self.options.security})"

    def send(self, alert: Alert) -> None:
        """Raises:
        AlertError: the server refused the message, or could not be reached."""
        try:
            with self._connect() as smtp:
                if self.options.user:
                    smtp.login(self.options.user, self.options.password)
                smtp.send_message(message(alert, self.options))
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertError(f"email: {self.describe()}: {_reason(exc)}") from None

    def _connect(self) -> smtplib.SMTP:
        o, timeout = self.options, self.options.timeout_s
        if o.security == "tls":
            return smtplib.SMTP_SSL(
                o.host, self.port, timeout=timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(o.host, self.port, timeout=timeout)
        if o.security == "starttls":
            try:
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp


def subject(alert: Alert) -> str:
    """``[fraudstream] BLOCK tx-1: score 912, 1,234.50 EUR``"""
    return (
        f"[fraudstream] {alert.outcome.upper()} {alert.transaction_id}: "
        f"score {alert.score}, {describe_amount(alert)}"
    )


def message(alert: Alert, options: SmtpOptions) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(alert)
    msg["From"] = options.sender
    msg["To"] = ", ".join(options.recipients)
    msg["X-Fraudstream-Alert-Id"] = alert.alert_id
    rows = _rows(alert)
    msg.set_content("\n".join(f"{k}: {v}" for k, v in rows) + "\n")
    cells = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    msg.add_alternative(
        f"<html><body><h2>{html.escape(subject(alert))}</h2><table>{cells}</table></body></html>",
        subtype="html",
    )
    return msg


def _rows(alert: Alert) -> list[tuple[str, str]]:
    c = alert.customer
    rows = [
        ("Transaction", alert.transaction_id),
        ("Outcome", alert.outcome),
        ("Score", str(alert.score)),
        ("Amount", describe_amount(alert)),
        ("Decided at", alert.decided_at.isoformat()),
        ("Reasons", ", ".join(alert.reasons) or "-"),
        ("Customer", c.customer_id if c else "unknown"),
    ]
    if c is not None:
        for label, value in (
            ("Name", c.name),
            ("E-mail", c.email),
            ("Phone", c.phone),
            ("Segment", c.segment),
        ):
            if value:
                rows.append((label, value))
    rows.append(("Routes", ", ".join(alert.routes)))
    return rows


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return f"{exc.smtp_code} {text}".strip()
    return str(exc) or type(exc).__name__
