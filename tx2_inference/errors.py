"""Errors a user can act on: each message says what was wrong and how to fix it."""


class UserError(Exception):
    """A problem the user can fix: bad input, a missing file, a wrong setting."""


class ConfigError(UserError):
    """A model config or parameter that is missing, malformed or does not fit the model."""


class ModelError(UserError):
    """A model file that is missing, empty, truncated or built for another runtime."""


class FrameError(UserError):
    """An image message whose data cannot be turned into a frame (encoding, size, step)."""


class BackendUnavailableError(UserError):
    """The requested backend cannot run here (no GPU, runtime not installed)."""
