"""Run ``livedata`` without its dashboard publication: the baseline that
``bench/live_queries.py --dashboard`` compares the normal server to.

    python -m bench.without_dashboard serve --port 8000

``DDPService.__init__`` is wrapped to empty ``self.feeds`` once the service is built, so
``livedata.dashboard`` is not offered and no batch reaches a ``Feed`` (not even its
per-model counting). A bench-only switch on purpose: the product has no setting to turn
the dashboard off, and must not need one for it to cost nothing while closed.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from livedata.server.app import DDPService

    built = DDPService.__init__

    def without_feeds(self: DDPService, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        self.feeds.clear()  # in place: ``publications`` is a ChainMap over this dict

    DDPService.__init__ = without_feeds  # type: ignore[method-assign]
    from livedata.cli import main as livedata

    livedata(["livedata", *sys.argv[1:]])


if __name__ == "__main__":
    main()
