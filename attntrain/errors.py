"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input (config, data file, CLI argument), not a bug."""

    exit_code = 2
