"""User-facing errors: the CLI prints them as one line and exits non-zero.

Raise these (never a bare ValueError) for problems a user can fix: a bad file, a bad row,
a bad option. The message names the file, the row and the problem.
"""

from __future__ import annotations


class NeuroSSLError(Exception):
    """Base class: a problem with the user's input, reported as one line."""

    exit_code = 1


class ManifestError(NeuroSSLError):
    """A manifest that cannot be read or that lacks what a command needs."""


class ImageError(NeuroSSLError):
    """A volume that cannot be read, or is not a usable 3D image."""


class ConfigError(NeuroSSLError):
    """An option or configuration value that is invalid or inconsistent."""

    exit_code = 2


class CheckpointError(NeuroSSLError):
    """A weights file that is missing, corrupt, untrusted or of the wrong kind."""


class LeakageError(NeuroSSLError):
    """Evaluation subjects overlap the subjects a model was trained on."""


class FederationError(NeuroSSLError):
    """A federated run that cannot go on: too few sites answered, or the server or a site stopped."""


def row_context(path, row: int | None) -> str:
    """``file.csv row 12`` with 1-based row numbers as a spreadsheet shows them (header = row 1)."""
    return f"{path} row {row}" if row is not None else f"{path}"
