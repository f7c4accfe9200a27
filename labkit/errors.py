"""Errors a learner sees: each says what was wrong and what is valid."""


class LabError(Exception):
    """Bad input or a failed lab operation; the stack was left as it was."""


class LabTimeout(LabError):
    """A wait ran out of time; the message carries the component's status and log tail."""


def check_text(value: object, what: str, most: int) -> str:
    """A string of 1 to `most` characters, or a LabError saying so."""
    if not isinstance(value, str) or not 1 <= len(value) <= most:
        shown = value if not isinstance(value, str) or len(value) <= 60 else f"{value[:60]}..."
        raise LabError(f"{what} must be a string of 1 to {most} characters, got {shown!r}"
                       + (f" ({len(value)} characters)" if isinstance(value, str) else ""))
    return value
