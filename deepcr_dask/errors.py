"""Exception types, one per failure family."""

from __future__ import annotations

__all__ = ["ClusterError", "ClusterOptionError", "ClusterTimeoutError", "DeepCRDaskError", "InputError", "ModelError"]


class DeepCRDaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(DeepCRDaskError, ValueError):
    """An image or file cannot be processed (wrong shape, dtype, unreadable, no science data)."""


class ModelError(DeepCRDaskError, ValueError):
    """A model name is unknown, or a weight file is missing, unsafe or does not fit its network."""


class ClusterError(DeepCRDaskError, RuntimeError):
    """A cluster could not be started, reached or closed."""


class ClusterOptionError(ClusterError, ValueError):
    """``make_cluster`` was given an unknown kind, an unknown option or an invalid option value."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """A scheduler did not answer, or workers did not arrive, within the time allowed."""
