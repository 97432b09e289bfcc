"""One exception type for everything a user can cause: its message says what to do next."""


class AnimateMeError(Exception):
    """A user-facing error. The message is one line: what is wrong, and what to do about it."""
