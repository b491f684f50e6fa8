"""The features the shipped default rules read: the one place to align with the feature engine.

The default rule set (``rules/defaults/default.yaml``) is written against these names; the
load-time check compiles it against the live feature list, so a rename in the feature engine
fails loudly at startup, naming the rule, the file line and the closest live name. Rename here
and in the YAML together.
"""

from __future__ import annotations

from fraudstream.rules.types import Type

EXPECTED_FEATURES: dict[str, Type] = {
    "customer_tx_count_1h": Type.NUMBER,
    "customer_amount_mean_30d": Type.NUMBER,
    "customer_amount_ratio_mean_30d": Type.NUMBER,
    "customer_distance_from_home": Type.NUMBER,
    "customer_distance_from_last": Type.NUMBER,
    "customer_speed_from_last_kmh": Type.NUMBER,
    "card_tx_count_1h": Type.NUMBER,
    "card_amount_sum_1h": Type.NUMBER,
    "is_first_seen_product_category": Type.BOOL,
}
"""Flat feature name -> type. Rules write them dotted: ``customer.tx_count_1h``.

``customer_*`` / ``card_*`` names follow `fraudstream.features.definitions` as of writing
(``customer_amount_ratio_mean_30d`` = amount / the customer's 30-day mean amount;
``customer_distance_from_home`` in km (or grid units); ``customer_speed_from_last_kmh`` the
speed implied since the previous transaction; ``is_first_seen_product_category`` true when the
customer never bought in this category before, from the per-customer exact set / Bloom filter
of the feature engine)."""

DEFAULT_LISTS: dict[str, str] = {
    "ip_blocklist": "ip",
    "disposable_domains": "string",
    "card_blocklist": "string",
    "trusted_customers": "string",
}
"""Lists the default rules look up (name -> kind). A list that does not exist is empty."""
