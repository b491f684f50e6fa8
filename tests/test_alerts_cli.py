"""`fraudstream alerts run` and `alerts test` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from alertkit import SECRET, parts, smtp_server, tls_cert, webhook_receiver
from clikit import run_cli
from fraudstream.config import Settings, public_view
from fraudstream.schema import Decision
from fraudstream.stream.keys import StreamKeys
from metricskit import folder_samples
from storekit import publish

KEYS = StreamKeys("tx", 16)


def block(tx: str) -> Decision:
    return Decision(
        transaction_id=tx,
        score=990,
        outcome="block",
        reasons=["rule:ip_blocklist"],
        model_version="m",
        rules_version="r",
        latency_ms=1.0,
        decided_at=datetime.now(UTC),
    )


def test_alerts_test_sends_one_signed_sample_webhook(tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        env = {"FRAUDSTREAM_ALERTS_WEBHOOK_URL": receiver.url,
               "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET}  # fmt: skip
        done = run_cli("alerts", "test", "--channel", "webhook", env=env, cwd=tmp_path)
        [got] = receiver.wait_for(1)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("webhook: sample alert test-") and " sent to http://127.0.0.1:" in line
    assert got.verified and SECRET not in done.stdout + done.stderr


def test_alerts_test_says_in_one_line_that_the_webhook_failed(tmp_path: Path) -> None:
    with webhook_receiver(default=500) as receiver:
        env = {"FRAUDSTREAM_ALERTS_WEBHOOK_URL": receiver.url,
               "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET,
               "FRAUDSTREAM_ALERTS_BACKOFF_S": "0.01"}  # fmt: skip
        done = run_cli("alerts", "test", "--channel", "webhook", "--attempts", "2", env=env,
                       cwd=tmp_path)  # fmt: skip
        assert len(receiver.wait_for(2)) == 2
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("webhook: sample alert NOT sent (2 attempts): ") and "HTTP 500" in line


def test_alerts_test_sends_one_sample_email(tmp_path: Path) -> None:
    with smtp_server() as mailbox:
        env = {"FRAUDSTREAM_ALERTS_SMTP_HOST": mailbox.host,
               "FRAUDSTREAM_ALERTS_SMTP_PORT": str(mailbox.port),
               "FRAUDSTREAM_ALERTS_SMTP_SECURITY": "plain",
               "FRAUDSTREAM_ALERTS_EMAIL_TO": "a@example.com, b@example.com"}  # fmt: skip
        done = run_cli("alerts", "test", "--channel", "email", env=env, cwd=tmp_path)
        [(recipients, message)] = mailbox.wait_for(1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("email: sample alert test-")
    assert recipients == ["a@example.com", "b@example.com"]
    assert message["Subject"].startswith("[fraudstream] BLOCK test-")
    assert message["Subject"].endswith(": score 950, 1,234.50 EUR")
    plain, rich = parts(message)
    assert "Name: Test Customer" in plain and "<td>Test Customer</td>" in rich


def test_alerts_run_alerts_the_blocks_and_reports(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    publish(client, KEYS.decisions, [block("tx-1"), block("tx-2")])
    with webhook_receiver() as receiver:
        env = {"FRAUDSTREAM_ALERTS_WEBHOOK_URL": receiver.url,
               "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET,
               "FRAUDSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}  # fmt: skip
        done = run_cli("alerts", "run", "--burst", "--json", env=env, valkey_url=valkey_url,
                       cwd=tmp_path)  # fmt: skip
        assert len(receiver.wait_for(2)) == 2
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["sent"], figures["failed"], figures["lag"]) == (2, 0, 0)
    assert "alerts: sent 2, failed 0, lag 0 decisions" in done.stderr
    assert SECRET not in done.stderr
    folder = tmp_path / ".fraudstream" / "metrics"
    assert folder_samples(folder, "fraudstream_alerts_total") == {'result="sent"': 2}


def test_alerts_run_counts_the_alerts_that_failed(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    publish(client, KEYS.decisions, [block("tx-1")])
    with webhook_receiver(default=500) as receiver:
        env = {"FRAUDSTREAM_ALERTS_WEBHOOK_URL": receiver.url,
               "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET,
               "FRAUDSTREAM_ALERTS_ATTEMPTS": "1",
               "FRAUDSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}  # fmt: skip
        done = run_cli("alerts", "run", "--burst", "--json", env=env, valkey_url=valkey_url,
                       cwd=tmp_path)  # fmt: skip
        assert len(receiver.wait_for(1)) == 1
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == 1
    folder = tmp_path / ".fraudstream" / "metrics"
    assert folder_samples(folder, "fraudstream_alerts_total") == {'result="failed"': 1}


def test_a_bad_routing_file_stops_alerts_run_with_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "alerts.toml"
    routes.write_text('[[route]]\nname = "big"\nmin_amount = -1\nchannels = ["webhook"]\n')
    env = {"FRAUDSTREAM_ALERTS_WEBHOOK_URL": "http://127.0.0.1:9/h",
           "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": SECRET}  # fmt: skip
    done = run_cli("alerts", "run", "--routes", str(routes), env=env, cwd=tmp_path)
    assert done.returncode == 2
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert "alerts.toml: route 1 (big): min_amount: must be >= 0, got -1" in line


def test_the_alert_secrets_are_masked_in_config_show() -> None:
    view = public_view(Settings(alerts_webhook_secret="w-s3cret", alerts_smtp_password="p4ss"))
    assert (view["alerts_webhook_secret"], view["alerts_smtp_password"]) == ("****", "****")


def test_alerts_run_without_a_channel_says_what_to_set(tmp_path: Path) -> None:
    done = run_cli("alerts", "run", cwd=tmp_path)
    assert done.returncode == 2
    assert "alerts: no channel is configured (set alerts_webhook_url" in done.stderr


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_email_goes_over_starttls_or_tls_with_the_credentials(
    tmp_path: Path, security: str
) -> None:
    """The server requires STARTTLS (or speaks TLS from the first byte) and a login: the
    message arrives only if the channel encrypts and logs in with the configured user. The
    server's certificate is trusted as a private CA would be, through ``SSL_CERT_FILE``."""
    with smtp_server(security, login=("fraud-team", "s3cret-pass")) as mailbox:  # type: ignore[arg-type]
        env = {"FRAUDSTREAM_ALERTS_SMTP_HOST": mailbox.host,
               "FRAUDSTREAM_ALERTS_SMTP_PORT": str(mailbox.port),
               "FRAUDSTREAM_ALERTS_SMTP_SECURITY": security,
               "FRAUDSTREAM_ALERTS_SMTP_USER": "fraud-team",
               "FRAUDSTREAM_ALERTS_SMTP_PASSWORD": "s3cret-pass",
               "FRAUDSTREAM_ALERTS_EMAIL_TO": "a@example.com",
               "SSL_CERT_FILE": str(tls_cert()[0])}  # fmt: skip
        done = run_cli("alerts", "test", "--channel", "email", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [(recipients, message)] = mailbox.wait_for(1)
        assert mailbox.logins == ["fraud-team"] and recipients == ["a@example.com"]
        assert message["Subject"].startswith("[fraudstream] BLOCK test-")
        wrong = run_cli(
            "alerts", "test", "--channel", "email",
            env={**env, "FRAUDSTREAM_ALERTS_SMTP_PASSWORD": "wrong"}, cwd=tmp_path,
        )  # fmt: skip
        system_cas = {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}
        untrusted = run_cli("alerts", "test", "--channel", "email", env=system_cas, cwd=tmp_path)
    assert wrong.returncode != 0 and "535" in wrong.stderr and "Traceback" not in wrong.stderr
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert len(mailbox.messages) == 1
