"""How long work reports and stops: the one vocabulary of the progress and cancel callbacks.

- `Progress`: `progress(fraction in [0, 1], message)`, called between steps.
- `Cancel`: `cancel() -> bool`, polled between steps; True asks the work to stop, which it does by
  raising the `Cancelled` of its stage.

- `Cancelled`: what a stage raises when its cancel() returned True; nothing was produced. One
  class for every stage (the sampler's, the pipeline's), so no caller translates between them.

Every stage that reports or stops takes these (the registration, the sampler, the pipeline, the
training side's imports).
"""

from __future__ import annotations

from typing import Callable

from .errors import AnimateMeError

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


class Cancelled(AnimateMeError):
    """The caller's cancel() returned True; nothing was produced."""
