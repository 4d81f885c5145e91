"""Errors a user can cause. The CLI prints them as one line and exits with code 2 (3: training diverged)."""


class UserError(Exception):
    """A problem with the user's input (config, data file, CLI argument), not a bug."""

    exit_code = 2


class Diverged(UserError):
    """Training stopped after too many consecutive steps with a non-finite loss or gradient norm."""

    exit_code = 3
