"""Errors that reach the operator as one clear line (no traceback)."""


class UserError(Exception):
    """Bad input from the operator: a config line, a file, a weights file, a flag.

    The message is one line naming the file, field or station at fault.
    """


class ConfigError(UserError):
    """A bad configuration file; the message names the file, line and field."""


class WeightsError(UserError):
    """A weights file that cannot be used (missing, wrong sha256, wrong architecture)."""
