"""User-facing errors.

Every error a user can cause (a bad file, a bad setting) is raised as
:class:`RbdaError` with a message that names the file or setting and says what
was expected. The command line prints such errors without a traceback and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class RbdaError(Exception):
    """An error caused by the user's input or configuration."""


class InputFileError(RbdaError):
    """A file that cannot be read as expected.

    ``where`` is an optional row number, id or key inside the file.
    """

    def __init__(self, path: str | Path, expected: str, where: str | None = None):
        self.path = Path(path)
        self.expected = expected
        self.where = where
        loc = f"{self.path}" + (f" ({where})" if where else "")
        super().__init__(f"{loc}: {expected}")


class SettingError(RbdaError):
    """A configuration value or command-line option that is not acceptable."""

    def __init__(self, setting: str, expected: str, got: object = None):
        self.setting = setting
        msg = f"setting {setting!r}: expected {expected}"
        if got is not None:
            msg += f", got {got!r}"
        super().__init__(msg)


class ConfigKeyError(SettingError):
    """A configuration key whose value is not acceptable; ``message`` names the key."""

    def __init__(self, key: str, message: str):
        self.setting = key
        RbdaError.__init__(self, message)
