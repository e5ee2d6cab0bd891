"""The one exception type for mistakes a user can make.

Library code raises `UserError` with a message that says what is wrong and what would be right;
the CLI prints it as a single `error: ...` line and exits with status 2.
"""


class UserError(ValueError):
    """Bad input from the user (path, file contents, step, model name, option)."""
