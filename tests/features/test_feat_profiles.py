"""Static profile features: loaded once, read with the batch, NaN without a profile."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import polars as pl
import pytest
import redis

from clikit import run_cli
from featkit import FIXED_CLOCK, tx
from fraudstream.errors import SchemaError
from fraudstream.features import FeatureEngine, default_feature_set
from fraudstream.features.profiles import load_profiles, profile_records, segment_codes

PROFILES = pl.DataFrame(
    {
        "customer_id": ["c1", "c2"],
        "segment": [2, None],
        "x": [13.0, None],
        "y": [24.0, None],
        "card_ids": [["K1", "K9"], ["K7"]],
    }
)


@pytest.mark.parametrize(
    ("frame", "field", "problem"),
    [
        (pl.DataFrame({"segment": [1]}), "customer_id", "required"),
        (pl.DataFrame({"customer_id": ["a", "a"]}), "customer_id", "repeated"),
        (pl.DataFrame({"customer_id": ["a"], "segment": [-1]}), "segment", ">= 0"),
        (pl.DataFrame({"customer_id": ["a"], "segment": [1.5]}), "segment", "integer"),
        (pl.DataFrame({"customer_id": ["a", None]}), "customer_id", "missing in row 2"),
        (pl.DataFrame({"customer_id": ["a", "  "]}), "customer_id", "missing in row 2"),
        (pl.DataFrame({"customer_id": ["a", "b", "a"]}), "customer_id", "rows 1, 3"),
        (
            pl.DataFrame({"customer_id": ["a", "b"], "x": ["1", "abc"], "y": [1, 2]}),
            "x",
            "not a number: 'abc' in row 2",
        ),
        (
            pl.DataFrame({"customer_id": ["a", "b"], "x": [1.0, 2.0], "y": [5.0, 1e308]}),
            "y",
            "within 0..100, got 1e+308 in row 2",
        ),
        (
            pl.DataFrame({"customer_id": ["a"], "home_lat": [1.0], "home_lon": [float("inf")]}),
            "home_lon",
            "within -180..180",
        ),
        (pl.DataFrame({"customer_id": ["a"], "home_lat": [1.0]}), "home_lon", "both"),
        (
            pl.DataFrame({"customer_id": ["a"], "home_lat": [91.0], "home_lon": [0.0]}),
            "home_lat",
            "within -90..90, got 91 in row 1",
        ),
    ],
)
def test_bad_profiles_name_the_field(frame: pl.DataFrame, field: str, problem: str) -> None:
    with pytest.raises(SchemaError) as err:
        profile_records(frame)
    assert err.value.field == field and problem in str(err.value)


@pytest.mark.integration
def test_static_features_come_from_the_loaded_profile(client: redis.Redis) -> None:
    assert load_profiles(client, PROFILES) == 2
    e = FeatureEngine(client, default_feature_set(), clock=lambda: FIXED_CLOCK)
    out = e.compute_batch(
        [
            tx(1, customer="c1"),  # card K1: the preferred one; at (10, 20)
            tx(2, customer="c1", card_id="K9", minutes=1),
            tx(3, customer="c2", card_id="K1"),  # a profile with only a card
            tx(4, customer="c3"),  # no profile at all
        ]
    )
    value = {
        n: out[:, e.names.index(f"customer_{n}")].tolist()
        for n in ("profile_segment", "distance_from_profile_home", "is_preferred_card")
    }
    assert value["profile_segment"][:2] == [2.0, 2.0]
    assert math.isnan(value["profile_segment"][2]) and math.isnan(value["profile_segment"][3])
    assert value["distance_from_profile_home"][0] == pytest.approx(5.0)  # (3, 4) away
    assert math.isnan(value["distance_from_profile_home"][2])
    assert value["is_preferred_card"][:3] == [1.0, 0.0, 0.0]
    assert math.isnan(value["is_preferred_card"][3])


@pytest.mark.integration
def test_cli_loads_profiles_and_shows_them(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("features", *args, valkey_url=valkey_url)

    bad = tmp_path / "bad.csv"
    pl.DataFrame({"customer_id": ["a"], "segment": [-3]}).write_csv(bad)
    result = cli("load-profiles", str(bad))
    assert result.returncode == 2 and "segment: must be >= 0" in result.stderr
    assert client.dbsize() == 0
    good = tmp_path / "customers.parquet"
    PROFILES.write_parquet(good)
    result = cli("load-profiles", str(good))
    assert result.returncode == 0, result.stderr
    shown = cli("show", "--customer", "c1", "--json")
    profile = json.loads(shown.stdout)["profile"]
    assert profile["segment"] == 2 and profile["home"]["a"] == 13.0
    assert profile["preferred_card"] == "set"


def test_segment_labels_get_one_code_whatever_else_the_file_holds() -> None:
    """A bank's file names its segments: each label's code depends on its text alone, so a
    model trained with one profile file reads the same codes from the next."""
    one = segment_codes(pl.Series(["gold", "SME", None, ""]))
    other = segment_codes(pl.Series(["retail", " gold ", "2"]))
    assert one[0] == other[1] and one[0] != one[1]
    assert one[2] == one[3] == -1  # no segment
    assert other[2] == 2 == segment_codes(pl.Series([2]))[0]  # digits: the integer code
    assert min(one[0], one[1], other[0]) >= 1 << 30  # never an integer code's


@pytest.mark.integration
def test_cli_loads_a_banks_csv_and_names_the_row_of_a_bad_value(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,segment,x,y\nc1,gold,10,20\nc2,silver,abc,5\n")
    result = run_cli("features", "load-profiles", str(bad), valkey_url=valkey_url)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: x: not a number: 'abc' in row 2"
    assert client.dbsize() == 0
    good = tmp_path / "bank.csv"
    good.write_text("customer_id,segment,card_ids\nc1,gold,K1;K9\nc2,,K7\n")
    result = run_cli("features", "load-profiles", str(good), valkey_url=valkey_url)
    assert result.returncode == 0, result.stderr
    e = FeatureEngine(client, default_feature_set(), clock=lambda: FIXED_CLOCK)
    out = e.compute_batch([tx(1, customer="c1", card_id="K1"), tx(2, customer="c2")])
    segment = out[:, e.names.index("customer_profile_segment")].tolist()
    assert segment[0] == segment_codes(pl.Series(["gold"]))[0] and math.isnan(segment[1])
    preferred = out[:, e.names.index("customer_is_preferred_card")].tolist()
    assert preferred[0] == 1.0  # K1, the first of "K1;K9"
