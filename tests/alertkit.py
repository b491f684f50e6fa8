"""Real receivers for the alerts: an HTTP server that checks each webhook's signature and
records it, and an SMTP server (aiosmtpd) that records each message."""

from __future__ import annotations

import functools
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from fraudstream.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SECRET = "test-webhook-secret"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    verified: bool


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (then ``default``), after checking
    its signature with `verify_signature`; every request is kept in ``received``."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    gate: threading.Event = field(default_factory=threading.Event)
    """Answers wait until it is set (it is, unless a test holds the receiver)."""
    hold_from: int = 1
    """The request (counting from 1) from which answers wait for the gate."""
    ports: list[int] = field(default_factory=list)
    """The client's port of each request: one per connection."""

    def answer(self, body: bytes, headers: dict[str, str]) -> int:
        verified = verify_signature(
            SECRET,
            headers.get(TIMESTAMP_HEADER, ""),
            body,
            headers.get(SIGNATURE_HEADER, ""),
            tolerance_s=300,
        )
        with self.changed:
            self.received.append(Received(body, headers, verified))
            self.changed.notify_all()
            status = self.statuses.pop(0) if self.statuses else self.default
            held = len(self.received) >= self.hold_from
        assert not held or self.gate.wait(30), "the test never released the receiver"
        return status if verified else 401

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} webhooks received"
            )
            return list(self.received)


@contextmanager
def webhook_receiver(
    *,
    statuses: list[int] | None = None,
    default: int = 200,
    keep_alive: bool = False,
    drop_after_answer: bool = False,
    tls: bool = False,
) -> Iterator[Receiver]:
    """``keep_alive``: HTTP/1.1, connections kept between requests (the client's port of
    each request in ``Receiver.ports``); ``drop_after_answer``: and yet each connection
    closed after its answer, without saying so (as a receiver's idle timeout does);
    ``tls``: https with `tls_cert`."""
    receiver = Receiver(statuses=list(statuses or []), default=default)
    receiver.gate.set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.ports.append(self.client_address[1])
            status = receiver.answer(body, dict(self.headers.items()))
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if drop_after_answer:
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_cert())
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/fraud"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    """A loopback port nothing listens on (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Mailbox:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    """Users that logged in (`smtp_server` with ``login``)."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.changed:
            self.messages.append((list(envelope.rcpt_tos), parsed))
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[list[str], EmailMessage]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"{len(self.messages)} of {count} e-mails received"
            )
            return list(self.messages)


@functools.cache
def tls_cert() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, made once per test
    process by ``openssl`` (no key is kept in the repository). A client trusts it through
    ``SSL_CERT_FILE``, as it would a private CA."""
    folder = Path(tempfile.mkdtemp(prefix="fraudstream-tls-"))
    cert, key = folder / "localhost.pem", folder / "localhost.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def smtp_server(
    security: Literal["plain", "starttls", "tls"] = "plain",
    login: tuple[str, str] | None = None,
) -> Iterator[Mailbox]:
    """An SMTP server on loopback (aiosmtpd), recording every message: plain, STARTTLS
    required (``starttls``) or implicit TLS (``tls``) with `tls_cert`; with ``login`` (over
    TLS), only that user and password are accepted."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    mailbox = Mailbox(port=closed_port())
    kwargs: dict[str, Any] = {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_cert())
    if security == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif security == "tls":
        kwargs.update(ssl_context=context)
    if login is not None:

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            given = (data.login.decode(), data.password.decode())
            ok = isinstance(data, LoginPassword) and given == login
            if ok:
                mailbox.logins.append(given[0])
            return AuthResult(success=ok, handled=False)  # a failure: the server says 535

        # aiosmtpd does not see implicit TLS as TLS: it would hide AUTH, or warn of AUTH
        # required in the clear. There AUTH is offered, not required (``logins`` tells).
        implicit = security == "tls"
        kwargs.update(
            authenticator=authenticator, auth_required=not implicit, auth_require_tls=not implicit
        )
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, **kwargs)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain text and the HTML of an alert e-mail."""
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    return str(plain.get_content()), str(rich.get_content())
