"""Exception types, one per failure family."""

from __future__ import annotations

__all__ = ["DeepCRDaskError", "InputError", "ModelError"]


class DeepCRDaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(DeepCRDaskError, ValueError):
    """An image or file cannot be processed (wrong shape, dtype, unreadable, no science data)."""


class ModelError(DeepCRDaskError, ValueError):
    """A model name is unknown, or a weight file is missing, unsafe or does not fit its network."""
