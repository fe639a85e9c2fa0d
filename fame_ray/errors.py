"""The one error type for user mistakes: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user: a message that says what was expected, and the fix."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(UserError):
    """A config key or value that cannot be used."""
