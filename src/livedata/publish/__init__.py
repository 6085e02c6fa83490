"""What developers declare for DDP: publications and their registry (``API``), methods
(``method``, ``MethodCall``) and who may use them (access checks). Nothing is callable or
published unless registered here; the live-query engine that serves publications is
``livedata.livequery``, which reads these declarations (this package does not know it)."""
