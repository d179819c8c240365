"""Errors that users see.

Every message names the file, the shape or the value at fault and says what to do. Command-line
entry points print these messages without a traceback (see `neurochat.cli.run_main`).
"""


class NeuroChatError(Exception):
    """Base class for errors whose message is meant for the person running NeuroChat."""


class DataError(NeuroChatError, ValueError):
    """Input data is missing, malformed or inconsistent (a file, a shape, a value)."""


class ConfigError(NeuroChatError, ValueError):
    """An option or a combination of options cannot work."""
