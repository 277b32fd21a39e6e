"""Exceptions raised by the depix library.

The library raises these; only the CLI turns them into a one-line message and an exit code.
"""

import dataclasses


class DepixError(Exception):
    """Base class of every error a user can cause (bad input, missing weights, ...).

    `advice`, when given, names what the user can do about it (a key of the CLI's `commands.common.ADVICE`):
    the message states the fact about the value, and the CLI adds the advice worded with its flags.
    """

    def __init__(self, *args, advice: str | None = None):
        super().__init__(*args)
        self.advice = advice


class InputError(DepixError):
    """The input file is missing, unreadable, corrupt or has no video stream."""


class OutputError(DepixError):
    """The output path cannot be written, or would overwrite the input."""


class WeightsError(DepixError):
    """A weights file is missing, corrupt or of an unknown format."""


class BackendError(DepixError):
    """An optional backend (detector, feature network, ...) is not installed or lacks its weights."""


class ConfigError(DepixError):
    """A configuration file or value is invalid."""


class OptionError(ConfigError):
    """The value given for one option is invalid. `option` is the config field (`region`, `boxes`, ...); the
    message speaks of the value only, and the CLI words it with the option's flag (`--region ...`)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


class DepixWarning(UserWarning):
    """Something the user should know that is not an error (e.g. the output's pixel format differs from
    the input's). The CLI prints each as one `Warning: ...` line, with its `advice` (as `DepixError`'s)
    worded after it."""

    def __init__(self, *args, advice: str | None = None):
        super().__init__(*args)
        self.advice = advice


def check_keys(cls, d: dict, what: str) -> None:
    """Raise ConfigError when `d` holds keys that are not fields of the dataclass `cls`."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} keys: {sorted(unknown)}")
