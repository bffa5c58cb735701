"""User-facing errors: one clear line (what, where, how to fix), non-zero exit, no traceback."""


class TinyGANError(Exception):
    """A mistake the user can fix (bad param, missing asset, corrupt file).

    The CLI and every stage print ``error: <message>`` on one line and exit with code 2.
    """
