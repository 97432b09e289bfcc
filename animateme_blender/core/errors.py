"""One exception type for everything a user can cause: its message says what to do next."""

from __future__ import annotations

from .remedies import remedy_words


class AnimateMeError(Exception):
    """A user-facing error. The message is one line: what is wrong, and what to do about it."""


# What a user can do about a refused fit, in generic words (a view of remedies.REMEDIES, the one
# table); each front end (Blender panel, command line) words the keys its own way from there.
REMEDY_WORDS = remedy_words("words")


class FitRefused(AnimateMeError):
    """The fit was not good enough to use (or the mesh cannot be fitted as it is).

    problem: what was wrong, in plain words ("the face looks upside down").
    remedies: keys of REMEDY_WORDS, quickest first; front ends name their own options for them.
    """

    def __init__(self, problem: str, remedies: tuple[str, ...] = ("landmarks", "region", "force"),
                 details: dict | None = None):
        unknown = [r for r in remedies if r not in REMEDY_WORDS]
        if unknown:
            raise ValueError(f"unknown remedies {unknown}")
        self.problem = problem
        self.remedies = tuple(remedies)
        self.details = dict(details or {})   # figures for logs and benchmarks, never shown to artists
        super().__init__(self.message())

    def message(self, names: dict | None = None) -> str:
        """One line: the problem, then the remedies in order, each by `names[key]` when the
        front end gives its own option names, else in generic words."""
        names = names or {}
        options = [names.get(key, REMEDY_WORDS[key]) for key in self.remedies]
        if not options:
            return f"{self.problem}."
        return f"{self.problem}: {'; or '.join(options)}."
