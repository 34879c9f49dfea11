"""The one exception family of hookstream."""


class HookstreamError(Exception):
    """Base of every error hookstream raises on purpose.

    The message always names the input at fault and the reason, so an
    operator can fix the input (or the config) without reading a traceback.
    """


class InputError(HookstreamError, ValueError):
    """Bad input: an audio file, a chunk event, a manifest line, a parameter.

    Fix or drop the named input; nothing already accepted is affected.
    """


class ConfigError(HookstreamError, ValueError):
    """A configuration file or value is invalid; the message names the key."""


class CheckpointError(HookstreamError):
    """A checkpoint is missing, unreadable or does not describe a known model."""
