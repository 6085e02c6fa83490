"""The ``livedata`` command: Django's management command runner.

Settings come from ``--settings`` or ``DJANGO_SETTINGS_MODULE``; without either, the bundled
demo project (``livedata.demo.settings``) is used, so ``livedata migrate``, ``livedata tail``
and ``livedata demo`` work right after installation.
"""

from __future__ import annotations

import os
import sys

DEFAULT_SETTINGS = "livedata.demo.settings"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    given = any(a == "--settings" or a.startswith("--settings=") for a in argv)
    if not given and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        os.environ["DJANGO_SETTINGS_MODULE"] = DEFAULT_SETTINGS
    from django.core.management import execute_from_command_line

    argv[0] = "livedata"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
