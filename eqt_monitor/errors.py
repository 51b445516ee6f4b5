"""Errors that reach the operator as one clear line (no traceback)."""

MAX_MESSAGE = 300  # characters of a value or message shown in an error line

# ``extra=`` of a warning that means the data themselves were bad (undecodable bytes, a dropped
# record, a wrong or changing rate, non-finite samples), as opposed to a gap, a missing component
# or a metadata note: a cluster replay reports the chunks whose tasks logged one (cluster/tasks.py)
BAD_DATA = {"bad_data": True}


class UserError(Exception):
    """Bad input from the operator: a config line, a file, a weights file, a flag.

    The message is one line naming the file, field or station at fault.
    """


class ConfigError(UserError):
    """A bad configuration file; the message names the file, line and field."""


class FieldError(ConfigError):
    """A bad value of one named setting, raised where its file and line are unknown; the config
    loader re-raises it naming the file and the line of ``field``."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class WeightsError(UserError):
    """A weights file that cannot be used (missing, wrong sha256, wrong architecture)."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one line of at most about ``limit`` characters (a huge value is cut, its length said)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def show(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for naming a bad value in an error line."""
    return one_line(repr(value), limit)
