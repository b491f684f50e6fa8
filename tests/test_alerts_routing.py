"""Routes: which decisions raise an alert on which channels, and one-line errors for a bad
routing file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fraudstream.alerts.routing import Route, Routes, default_routes, load_routes
from fraudstream.errors import ConfigError
from fraudstream.schema import Decision, Outcome


def decision(
    outcome: Outcome = "block", score: int = 900, reasons: list[str] | None = None
) -> Decision:
    return Decision(
        transaction_id="tx-1",
        score=score,
        outcome=outcome,
        reasons=reasons or [],
        model_version="m",
        rules_version="r",
        latency_ms=1.0,
        decided_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


ROUTES = """
[[route]]
name = "blocks"
outcome = "block"
channels = ["webhook"]

[[route]]
name = "large reviews"
outcome = ["review"]
min_score = 600
max_score = 799
min_amount = 1000
channels = ["email"]

[[route]]
name = "blocklisted ip"
rule = "ip_blocklist"
channels = ["email", "webhook"]
"""


def test_routes_match_on_outcome_score_band_amount_and_rule(tmp_path: Path) -> None:
    routes = load_routes(write(tmp_path, ROUTES))
    assert routes.channels_for(decision("block"), None) == {"webhook": ["blocks"]}
    assert routes.channels_for(decision("approve", 100), 5000.0) == {}
    large = decision("review", 700)
    assert routes.channels_for(large, 1000.0) == {"email": ["large reviews"]}
    assert routes.channels_for(large, 999.99) == {}
    assert routes.channels_for(large, None) == {}  # an unknown amount is not a large one
    assert routes.channels_for(decision("review", 599), 5000.0) == {}
    assert routes.channels_for(decision("review", 800), 5000.0) == {}
    hit = decision("approve", 10, ["rule:ip_blocklist"])
    assert routes.channels_for(hit, None) == {
        "email": ["blocklisted ip"],
        "webhook": ["blocklisted ip"],
    }
    assert routes.channels_for(decision("approve", 10, ["rule:ip_blocklist_v2"]), None) == {}


def test_a_decision_takes_every_matching_route_each_channel_once(tmp_path: Path) -> None:
    routes = load_routes(write(tmp_path, ROUTES))
    both = decision("block", 950, ["rule:ip_blocklist"])
    assert routes.channels_for(both, None) == {
        "webhook": ["blocks", "blocklisted ip"],
        "email": ["blocklisted ip"],
    }


def test_without_a_file_blocks_go_to_every_configured_channel() -> None:
    routes = default_routes({"email", "webhook"})
    assert routes.channels_for(decision("block"), None) == {
        "webhook": ["blocks"],
        "email": ["blocks"],
    }
    assert routes.channels_for(decision("review", 799), None) == {}
    assert default_routes({"email"}).channels() == {"email"}
    assert default_routes(set()).routes == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[route]]\nname = "a"\nchannels = ["webhook"]\n[[route]]\nname = "b"\n'
            'min_score = 2000\nchannels = ["email"]\n',
            "alerts.toml: route 2 (b): min_score: must be in 0..1000, got 2000",
        ),
        (
            '[[route]]\nname = "a"\nchannels = ["sms"]\n',
            "alerts.toml: route 1 (a): channels: must be among webhook, email, got 'sms'",
        ),
        (
            '[[route]]\nname = "a"\nchannels = ["email"]\nmin_amont = 5\n',
            "alerts.toml: route 1 (a): min_amont: unknown field",
        ),
        (
            '[[route]]\nname = "a"\nchannels = ["email"]\nmin_amount = "lots"\n',
            "alerts.toml: route 1 (a): min_amount: expected `float",
        ),
        (
            '[[route]]\nname = "a"\noutcome = "blocked"\nchannels = ["email"]\n',
            "route 1 (a): outcome: must be among approve, step_up, review, block, got 'blocked'",
        ),
        ('[[route]]\nchannels = ["email"]\n', "alerts.toml: route 1: name: required field"),
        ('[[route]]\nname = "a"\n', "alerts.toml: route 1 (a): channels: required field"),
        ('[[route]]\nname = "a"\nchannels = []\n', "route 1 (a): channels: must name at least"),
        (
            '[[route]]\nname = "a"\nmin_score = 700\nmax_score = 600\nchannels = "email"\n',
            "route 1 (a): max_score: must be >= min_score (700)",
        ),
        ('[[rout]]\nname = "a"\n', "alerts.toml: rout: unknown key"),
        ("[[route]\n", "alerts.toml: invalid TOML"),
    ],
)
def test_a_bad_routing_file_is_one_line_naming_the_file_route_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_routes(write(tmp_path, text))
    said = str(caught.value)
    assert "\n" not in said
    assert said.startswith(str(tmp_path / "alerts.toml")), said
    assert message in said, said


def test_a_route_naming_a_channel_not_configured_is_refused(tmp_path: Path) -> None:
    routes = load_routes(write(tmp_path, ROUTES))
    with pytest.raises(ConfigError, match=r"route 2 \(large reviews\): channels: email is not"):
        routes.check_configured({"webhook"}, "set alerts_smtp_host")


def test_a_route_without_criteria_matches_every_decision() -> None:
    routes = Routes([Route(name="all", channels=["webhook"])], "test")
    assert routes.channels_for(decision("approve", 0), None) == {"webhook": ["all"]}
