"""How long work reports and stops: the one vocabulary of the progress and cancel callbacks.

- `Progress`: `progress(fraction in [0, 1], message)`, called between steps.
- `Cancel`: `cancel() -> bool`, polled between steps; True asks the work to stop, which it does by
  raising the `Cancelled` of its stage.

Every stage that reports or stops takes these (the registration, the sampler, the pipeline, the
training side's imports). Not yet here: pipeline.py and sampler.py each still define their own
aliases and `Cancelled` (the pipeline translates the sampler's into its own); they move here with
the core's sub-packages (issue 41, next step).
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]
