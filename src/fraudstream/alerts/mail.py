"""The e-mail channel: stdlib ``smtplib``, one message per alert, plain text with an HTML
alternative; the subject names the outcome, the score and the amount.

A step-up alert is the exception: it is the buyer's one-time code, so it goes to the
customer's own e-mail address (from the store's customers), says nothing of scores or
reasons, and fails (is retried, then dead-lettered) when the store knows no address."""

from __future__ import annotations

import html
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from fraudstream.alerts.payload import Alert, DriftAlert, describe_amount
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

    def close(self) -> None:
        """Nothing kept: each message goes on a connection of its own."""

    def send(self, alert: Alert | DriftAlert) -> None:
        """Raises:
        AlertError: the server refused the message, or could not be reached; or a step-up
            code for a customer without an e-mail address."""
        if isinstance(alert, DriftAlert):
            built = drift_message(alert, self.options)
        elif alert.challenge is None:
            built = message(alert, self.options)
        else:
            built = code_message(alert, self.options)
        try:
            with self._connect() as smtp:
                if self.options.user:
                    smtp.login(self.options.user, self.options.password)
                smtp.send_message(built)
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
    return _table_message(subject(alert), alert.alert_id, _rows(alert), options)


def drift_message(alert: DriftAlert, options: SmtpOptions) -> EmailMessage:
    """``[fraudstream] DRIFT model 1a2b…: score PSI 0.31 > 0.25``, the figures in a table."""
    over = ", ".join(alert.over)
    title = f"[fraudstream] DRIFT model {alert.model_version}: {over} PSI > {alert.threshold:g}"
    rows = [
        ("Model", alert.model_version),
        ("Over the threshold", over),
        ("Score PSI", _psi(alert.score_psi)),
        *((f"Feature {name}", _psi(value)) for name, value in alert.feature_psi.items()),
        ("Transactions", f"{alert.rows:,} (the live workers' windows)"),
        ("Detected at", alert.detected_at.isoformat()),
        ("Reading", "< 0.1 stable, 0.1-0.25 moderate, > 0.25 significant"),
    ]
    return _table_message(title, alert.alert_id, rows, options)


def _psi(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"


def _table_message(
    title: str, alert_id: str, rows: list[tuple[str, str]], options: SmtpOptions
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = options.sender
    msg["To"] = ", ".join(options.recipients)
    msg["X-Fraudstream-Alert-Id"] = alert_id
    msg.set_content("\n".join(f"{k}: {v}" for k, v in rows) + "\n")
    cells = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    msg.add_alternative(
        f"<html><body><h2>{html.escape(title)}</h2><table>{cells}</table></body></html>",
        subtype="html",
    )
    return msg


def code_message(alert: Alert, options: SmtpOptions) -> EmailMessage:
    """The buyer's one-time code, to the customer's own address.

    Raises:
        AlertError: the store holds no e-mail address for the customer.
    """
    challenge, customer = alert.challenge, alert.customer
    assert challenge is not None
    if customer is None or not customer.email:
        who = customer.customer_id if customer else "unknown"
        raise AlertError(f"email: no e-mail address for customer {who!r}: step-up code not sent")
    until = challenge.expires_at.strftime("%H:%M UTC")
    text = (
        f"Your verification code for the payment of {describe_amount(alert)} is"
        f" {challenge.code}. It is valid until {until}. If you did not make this payment,"
        " do not share the code."
    )
    msg = EmailMessage()
    msg["Subject"] = f"Your verification code: {challenge.code}"
    msg["From"] = options.sender
    msg["To"] = customer.email
    msg["X-Fraudstream-Alert-Id"] = alert.alert_id
    msg.set_content(text + "\n")
    msg.add_alternative(f"<html><body><p>{html.escape(text)}</p></body></html>", subtype="html")
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
