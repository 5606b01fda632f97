"""The one base class of the errors a user can cause.

Every library error that means "your input or your environment is wrong" (a bad
search-space file, a missing data set, an unreachable database or cluster)
derives from :class:`RobustnessError`, and its message is one complete line.
The CLI catches this class alone and prints ``Error: <message>`` with exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["RobustnessError"]


class RobustnessError(Exception):
    """A user-facing error whose message is one complete line."""
