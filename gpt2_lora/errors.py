"""One exception type for mistakes a user can make, and the CLI wrapper that prints it as one line."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """A problem the user can fix (bad file, line, flag or shape).

    The message is a single line: where (file:line, flag) and what was expected vs found.
    CLIs print it without a traceback and exit with status 2.
    """


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a CLI ``main`` so a UserError becomes ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            code = main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        return 0 if code is None else int(code)

    return wrapper
