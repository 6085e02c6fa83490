"""The operators' dashboard (issue 18): a staff-only page in the Django admin, live over
livedata's own DDP server.

- ``feed``: the publication ``livedata.dashboard``, served from the process's memory (no
  live query): the runtime's figures (``runtime.figures``, the board the Prometheus
  endpoint reads too), the live queries' details, recent change rows as they are read,
  webhook subscriptions and mirrors. It runs only while someone is subscribed: no timer,
  no query otherwise (``tests/dashboard/test_idle.py`` counts both);
- ``documents``: the pure part, figures into the page's documents and rates;
- ``reading``: one reading of the board as "now" and "flow" (the page's refresh and the
  cluster report both take theirs there);
- ``cluster``: every live process's row in an UNLOGGED table, written only while a page
  is open somewhere (a NOTIFY with each refresh starts each process's report);
- ``store``: what the page needs from the database (webhooks, mirrors, recent rows, the
  live processes' rows);
- ``access``: who may see it (active staff with ``livedata.view_dashboard``);
- ``methods``: the page's buttons, staff-only DDP methods (retry a webhook now, re-enable);
- ``models``, ``admin``: the unmanaged model that gives the page its admin URL
  (``/admin/livedata/dashboard/``) and permission, and the page itself (template and
  static files in the app: ``livedata/static/livedata/dashboard/``, uPlot vendored).

A layer of its own between the consumers (``livequery``, ``webhooks``, ``pull``,
``metrics``: it reads their state) and ``server`` (which routes the publication to it).
"""
