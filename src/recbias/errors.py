"""User-facing errors.

Library code raises :class:`RecbiasError` (or a subclass) for anything caused by the user's input:
files, columns, config keys, checkpoints. The CLI prints the message on one line and exits non-zero;
a traceback is shown only with ``--debug``.
"""

from __future__ import annotations


class RecbiasError(Exception):
    """An error caused by user input; its message names the file/line/field and what was expected."""


class ConfigError(RecbiasError):
    """A config key is unknown, has the wrong type or an invalid value."""


class DataError(RecbiasError):
    """An input data file is malformed, truncated or inconsistent."""


class ModelError(RecbiasError):
    """A checkpoint is missing or unusable, or a prompt does not fit the model."""
