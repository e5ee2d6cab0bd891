"""The one exception type for mistakes a user can make.

Library code raises `UserError` with a message that says what is wrong and what would be right;
the CLI prints it as a single `error: ...` line and exits with status 2.
"""


class UserError(ValueError):
    """Bad input from the user (path, file contents, step, model name, option)."""


def first_difference(old, new, path: str = "") -> tuple[str, object, object] | None:
    """The first setting where two JSON-like values differ: (dotted path, old value, new value)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if (found := first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))):
                return found
        return None
    return None if old == new else (path or "value", old, new)


def settings_mismatch(where: str, old: dict, new: dict, what: str = "a run") -> str:
    """"FOLDER holds a run with other settings: batch_size is 32 there, 16 now" (or the bare
    sentence when no difference is found)."""
    diff = first_difference(old, new)
    detail = f": {diff[0]} is {diff[1]!r} there, {diff[2]!r} now" if diff else ""
    return f"{where} holds {what} with other settings{detail}"
