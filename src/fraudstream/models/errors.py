"""Errors of the models subsystem, under `fraudstream.errors.FraudstreamError`."""

from __future__ import annotations

from fraudstream.errors import FraudstreamError


class ModelError(FraudstreamError):
    """A model could not be trained, evaluated, stored, verified or loaded.

    ``str(error)`` is one line naming what and why, e.g.
    ``model 3f2a…: signature check failed (wrong registry key, or the artifact was altered)``.
    """


class SignatureError(ModelError):
    """An artifact's HMAC does not verify: it is refused, never deserialised."""


class MissingKeyError(ModelError):
    """This host has no registry key (neither ``model_registry_key`` nor the key file)."""


class UnknownVersionError(ModelError):
    """No model version of that id is stored."""


class NothingToPromoteError(ModelError):
    """`promote` was given no version and no shadow version is set."""
