"""The one error type for user mistakes: the CLI prints it as one line and exits 2. And
`printable`, how text that came from the user or from files (run names, paths, metric values,
config keys) reaches that line or a command's output: escaped and cut, never raw."""


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


def printable(text: object, limit: int = 200) -> str:
    """`text` safe to print on a terminal: every character that is not printable (ESC and the
    other control characters that start terminal escape sequences, newlines, bidi overrides)
    written as its Python escape (\\x1b, \\n, \\u202e), and cut after `limit` characters."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    return shown if len(shown) <= limit else shown[:limit] + "..."
