"""Product categories, merchant category codes and email domains of the ``full`` profile.

A small fixed catalogue: enough variety for "unusual category for this customer" and
"risky category" signals to exist, small enough to read. The category order is part of the
data (categories are stored as indices while simulating), so append, never reorder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.simulate.arrays import IntArray


@dataclass(frozen=True)
class Category:
    name: str
    mcc: str
    """ISO 18245 merchant category code of the merchants selling it."""
    subcategories: tuple[str, ...]
    in_store: bool
    """Sold at physical terminals too (not only online)."""
    risky: bool = False
    """Resold easily, hence what account takeovers buy."""


CATEGORIES: tuple[Category, ...] = (
    Category("grocery", "5411", ("fresh", "pantry", "beverages", "household"), in_store=True),
    Category("restaurants", "5812", ("dine_in", "delivery", "coffee"), in_store=True),
    Category("fuel", "5541", ("petrol", "ev_charging"), in_store=True),
    Category("fashion", "5651", ("clothing", "shoes", "accessories"), in_store=True),
    Category("health_beauty", "5977", ("cosmetics", "pharmacy", "personal_care"), in_store=True),
    Category("home_garden", "5712", ("furniture", "garden", "kitchen"), in_store=True),
    Category(
        "electronics", "5732", ("phones", "laptops", "audio", "gaming"), in_store=True, risky=True
    ),
    Category("travel", "4722", ("flights", "hotels", "car_rental"), in_store=False, risky=True),
    Category(
        "digital_goods",
        "5818",
        ("gift_cards", "software", "game_credits", "streaming"),
        in_store=False,
        risky=True,
    ),
    Category("books_media", "5942", ("books", "music", "video"), in_store=False),
)

CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)
CATEGORY_MCC = tuple(c.mcc for c in CATEGORIES)
SUBCATEGORY_NAMES = tuple(s for c in CATEGORIES for s in c.subcategories)
SUBCATEGORY_COUNT = np.array([len(c.subcategories) for c in CATEGORIES], dtype=np.int64)
SUBCATEGORY_START = np.concatenate([[0], np.cumsum(SUBCATEGORY_COUNT)[:-1]]).astype(np.int64)
IN_STORE = np.array([i for i, c in enumerate(CATEGORIES) if c.in_store], dtype=np.int64)
RISKY = np.array([i for i, c in enumerate(CATEGORIES) if c.risky], dtype=np.int64)
TESTING_CATEGORY = CATEGORY_NAMES.index("digital_goods")
"""Card testers favour merchants of instant digital goods (donations, game credits)."""

EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "orange.fr")
EMAIL_DOMAIN_WEIGHTS = (0.42, 0.2, 0.14, 0.12, 0.04, 0.08)
THROWAWAY_DOMAINS = ("mailinator.com", "guerrillamail.com", "tempmail.dev", "yopmail.com")


def random_subcategory(gen: np.random.Generator, category: IntArray) -> IntArray:
    """A subcategory uniformly within each category (global subcategory index)."""
    count = SUBCATEGORY_COUNT[category]
    return SUBCATEGORY_START[category] + (gen.random(len(category)) * count).astype(np.int64)
