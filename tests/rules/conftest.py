"""The schema fixture every rules test compiles against."""

from __future__ import annotations

import pytest

from fraudstream.rules import RuleSchema
from rulekit import SCHEMA


@pytest.fixture
def schema() -> RuleSchema:
    return SCHEMA
