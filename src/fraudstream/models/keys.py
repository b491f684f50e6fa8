"""The registry's signing key: where a host finds it, and who may create it.

Every host that scores with or manages models needs the key they were signed with: the
``model_registry_key`` setting (the same on every host) or the data dir's ``registry.key``.
Only the command that stores the first model (`train`, or `demo` when it trains) creates that
file. Any other command that finds no key while models are stored refuses, naming both places:
a key made up on the spot would verify nothing, and the host would score with the amount policy
without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fraudstream.keyfile import create_secret
from fraudstream.models.artifact import check_key
from fraudstream.models.errors import MissingKeyError

KEY_FILE = "registry.key"
SETTING = "model_registry_key (FRAUDSTREAM_MODEL_REGISTRY_KEY)"


@dataclass(frozen=True)
class KeySource:
    """This host's registry key: ``configured`` (the setting) if set, else ``data_dir``'s file.

    >>> KeySource("", Path("/srv/fs")).origin
    '/srv/fs/registry.key'
    """

    configured: str
    data_dir: Path

    def __post_init__(self) -> None:
        if self.configured:
            check_key(self.configured.encode())  # a malformed setting fails at once

    @property
    def path(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def origin(self) -> str:
        """Where the key comes from, for messages (never the key itself)."""
        return "model_registry_key" if self.configured else str(self.path)

    def available(self) -> bool:
        return bool(self.configured) or self.path.exists()

    def load(self) -> bytes:
        """The key.

        Raises:
            MissingKeyError: neither the setting nor the file is there.
            ModelError: the key is too short.
        """
        if self.configured:
            return check_key(self.configured.encode())
        if not self.path.exists():
            raise MissingKeyError(
                f"model registry key: model_registry_key is not set and {self.path} does not "
                f"exist: set {SETTING} to the key the models were signed with, or copy that "
                "file from the host that trained them"
            )
        return check_key(self.path.read_text().strip().encode())

    def missing(self, stored: int) -> MissingKeyError:
        """The error for a host without a key facing ``stored`` signed versions."""
        return MissingKeyError(
            f"model registry key: {stored} model version(s) are stored but this host has no "
            f"key: set {SETTING} to the key that signed them, or copy {self.path} from the "
            "host that trained them"
        )

    def create(self) -> Path | None:
        """Create the key file unless a key is available; the file when this call made it."""
        if self.available() or not create_secret(self.path):
            return None
        return self.path


def registry_key(data_dir: Path, *, create: bool = False) -> bytes:
    """The key in ``data_dir/registry.key`` (32 random bytes, mode 0600); ``create`` makes it
    when missing.

    Raises:
        MissingKeyError: no key file and ``create`` is false.
        ModelError: the file is too short.
    """
    source = KeySource("", data_dir)
    if create:
        source.create()
    return source.load()
