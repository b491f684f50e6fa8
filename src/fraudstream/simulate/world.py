"""What an injected fraud pattern draws from (`World`) and the fresh ids it allocates
(`Fresh`): shared by `fraudstream.simulate.extensions` and `fraudstream.simulate.stealth`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.simulate.arrays import SECONDS_PER_DAY, IntArray, TxArrays
from fraudstream.simulate.identities import Identities
from fraudstream.simulate.profiles import Customers, Terminals


@dataclass
class Fresh:
    """Allocates never-seen device ids and fraudster email addresses (after the customers')."""

    next_device: int
    next_email: int

    def devices(self, n: int) -> IntArray:
        out = np.arange(self.next_device, self.next_device + n, dtype=np.int64)
        self.next_device += n
        return out

    def emails(self, n: int) -> IntArray:
        out = np.arange(self.next_email, self.next_email + n, dtype=np.int64)
        self.next_email += n
        return out


@dataclass(frozen=True)
class World:
    """What the patterns draw from: the population and the genuine history."""

    customers: Customers
    terminals: Terminals
    ids: Identities
    history: TxArrays
    n_days: int
    seed: int

    @property
    def horizon(self) -> int:
        return self.n_days * SECONDS_PER_DAY
