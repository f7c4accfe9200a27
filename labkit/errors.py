"""Errors a learner sees: each says what was wrong and what is valid."""


class LabError(Exception):
    """Bad input or a failed lab operation; the stack was left as it was."""


class LabTimeout(LabError):
    """A wait ran out of time; the message carries the component's status and log tail."""
