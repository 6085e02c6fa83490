"""The bookstore demo: the example project, and the default settings of the ``livedata`` command."""
