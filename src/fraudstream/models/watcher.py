"""`ModelWatcher`: a worker's active and shadow models, in step with the registry's pointers.

Workers call `ModelWatcher.maybe_reload` between batches: one ``MGET`` of the two pointers; a
fetch, the checks and a parse only when a pointer moved. A version that does not load is loud:
an ERROR log line, one more in `load_failures`, and the state in `health()` (the API's
``/healthz`` shows it). The watcher then keeps scoring with what it has and tries that version
again only when the pointer moves. At start-up there is nothing to keep, so `start` refuses
when the active version does not load (or the host has no key while models are stored): a
worker never scores with the amount policy while the registry names a model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

from fraudstream.features import FeatureSet
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.errors import ModelError
from fraudstream.models.registry import ModelRegistry

log = logging.getLogger("fraudstream.models")

Role = Literal["active", "shadow"]


@dataclass(frozen=True)
class ModelHealth:
    """What a watcher scores with, as of its last look at the pointers."""

    state: Literal["none", "active", "failed"]
    """``none``: no version is active (the amount policy decides); ``failed``: the active
    pointer names a version that did not load (``version`` still decides)."""
    version: str | None
    """The version deciding (None: the amount policy)."""
    wanted: str | None
    """The version the active pointer names."""
    shadow: str | None
    error: str | None
    """Why a version a pointer names is not loaded (None when both are)."""
    load_failures: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ModelWatcher:
    """Keeps a worker's active and shadow models in step with the registry's pointers.

    Args:
        registry: where the versions and pointers live.
        definitions: the live feature definitions a version must agree with to be loaded.
    """

    def __init__(self, registry: ModelRegistry, definitions: FeatureSet | None = None) -> None:
        self.registry = registry
        self.definitions = definitions
        self.active: ModelBundle | None = None
        self.shadow: ModelBundle | None = None
        self.load_failures = 0
        """Versions that failed to load since this watcher started."""
        self._pointers: tuple[str | None, str | None] = (None, None)
        self._failed: dict[str, ModelError] = {}

    def start(self) -> None:
        """Load what the pointers name before the first batch.

        Raises:
            ModelError: the active version does not load, or versions are stored and this
                host has no key (`MissingKeyError`, naming the setting and the key file).
        """
        self.registry.check_key()
        active, _ = self.registry.pointers()
        if active is not None:
            try:
                self.active = self.registry.load(active, self.definitions)
            except ModelError as exc:
                raise type(exc)(f"refusing to start: the active {exc}") from None
        self.maybe_reload()

    def maybe_reload(self) -> bool:
        """One ``MGET``; load only what changed. True when a model was replaced or dropped."""
        return self.follow(*self.registry.pointers())

    @property
    def pointer_keys(self) -> tuple[str, str]:
        """The keys of the active and shadow pointers, for a caller reading them along
        with others (`follow`)."""
        return self.registry.active_key, self.registry.shadow_key

    def follow(self, active: str | bytes | None, shadow: str | bytes | None) -> bool:
        """`maybe_reload` with the pointers' values already read."""
        self._pointers = _version(active), _version(shadow)
        active_v, shadow_v = self._pointers
        changed = self._follow("active", active_v)
        return self._follow("shadow", shadow_v) or changed

    @property
    def error(self) -> ModelError | None:
        """Why a version a pointer names is not loaded (None when both are)."""
        return next((self._failed[v] for v in self._pointers if v in self._failed), None)

    def health(self) -> ModelHealth:
        wanted = self._pointers[0]
        version = self.active.version if self.active is not None else None
        state: Literal["none", "active", "failed"] = "active" if version else "none"
        if wanted is not None and wanted in self._failed:
            state = "failed"
        error = self.error
        return ModelHealth(
            state,
            version,
            wanted,
            self.shadow.version if self.shadow is not None else None,
            str(error) if error is not None else None,
            self.load_failures,
        )

    def _follow(self, role: Role, wanted: str | None) -> bool:
        current: ModelBundle | None = getattr(self, role)
        if wanted is None:
            if current is not None and role == "shadow":
                self.shadow = None
                return True
            return False
        if (current is not None and current.version == wanted) or wanted in self._failed:
            return False
        try:
            bundle = self.registry.load(wanted, self.definitions)
        except ModelError as exc:
            self._failed[wanted] = exc
            self.load_failures += 1
            keeping = f"model {current.version}" if current is not None else "none"
            if role == "active" and current is None:
                keeping = "the amount policy"
            log.error("%s model not loaded: %s; still scoring with %s", role, exc, keeping)
            return False
        setattr(self, role, bundle)
        return True


def _version(pointer: str | bytes | None) -> str | None:
    return pointer.decode() if isinstance(pointer, bytes) else pointer
