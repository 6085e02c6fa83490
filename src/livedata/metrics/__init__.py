"""The process's figures for machines: Prometheus text exposition at ``/livedata/metrics``.

- ``prometheus``: a ``prometheus_client`` collector that reads the runtime's figures
  (``livedata.runtime.figures``) on each scrape, plus the library's process collector
  (memory, CPU, open files);
- ``views``: the endpoint, protected like the HTTP APIs: a metrics token (``livedata
  token USER --kind metrics``, good for this endpoint only) or a staff user (HTTP
  Basic, an API token, or the Django session).

Nothing is counted for it on the serving paths: the figures are what each part keeps
(see ``runtime.figures``), read when scraped.
"""
