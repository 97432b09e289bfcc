"""A quiet console for the headless runs: one progress bar per long stage, Blender's per-frame
chatter ("Saved: ...", "Video append frame ...") kept out of the output.

Blender writes those lines from C straight to file descriptor 1, so `silenced()` points that
descriptor at /dev/null for the duration (Python's own prints included; bars go to stderr).
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced():
    """Standard output (the file descriptor, so C code too) to /dev/null; errors still show."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:        # no real descriptor (an embedded console): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class ProgressBar:
    """tqdm where it is importable (the project's venv), else a line per 10 % (Blender's Python)."""

    def __init__(self, description: str, total: int, unit: str = "%"):
        self.total, self.description, self._last = total, description, -1
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, leave=True, file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {postfix}")
        except ImportError:
            self._bar = None

    def update_to(self, done: float, message: str = "") -> None:
        done = min(max(done, 0), self.total)
        if self._bar is not None:
            if message:
                self._bar.set_postfix_str(message, refresh=False)
            self._bar.update(int(done) - self._bar.n)
            return
        step = int(10 * done / max(self.total, 1))
        if step != self._last:
            self._last = step
            print(f"  {self.description}: {100 * done / max(self.total, 1):3.0f}% {message}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
