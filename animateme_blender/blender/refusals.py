"""The one place the bpy layer words an error for the artist, and remembers the last refusal.

A refusal from the core (`FitRefused`, with `.problem` and `.remedies`) or from the mesh checks
(`MeshRefused`) becomes one line naming the panel's own options, quickest first, through the
vocabulary's remedy table; any other AnimateMeError keeps its message. The panel shows the last
refusal of the active object, with Use Anyway when the fit itself was refused.
"""

from __future__ import annotations

from ..core.errors import AnimateMeError
from ..core.vocabulary import explain_error

PREFIX = "AnimateMe: "
last_refusal: dict[str, dict] = {}     # object name -> {"message", "remedies"}


class MeshRefused(AnimateMeError):
    """A mesh Blender holds that cannot be animated as it is: `.problem`, `.remedies` (keys)."""

    def __init__(self, problem: str, remedies: tuple[str, ...]):
        super().__init__(problem)
        self.problem = problem
        self.remedies = tuple(remedies)


def user_message(error: Exception) -> str:
    """What the operator reports: the problem and, for a refusal, the panel's remedies."""
    if isinstance(error, AnimateMeError):
        return PREFIX + explain_error(error, "panel")
    return PREFIX + f"{type(error).__name__}: {error}"


def remember(object_name: str, error: Exception) -> str:
    """Keep a refusal for the panel (with its remedy keys); returns the message."""
    message = user_message(error)
    remedies = tuple(getattr(error, "remedies", ()) or ())
    if remedies:
        last_refusal[object_name] = {"message": message, "remedies": remedies}
    return message


def forget(object_name: str) -> None:
    last_refusal.pop(object_name, None)


def can_use_anyway(object_name: str) -> bool:
    return "force" in last_refusal.get(object_name, {}).get("remedies", ())
