"""The bookstore demo: the example project of ``livedata demo``.

Its settings are used by ``livedata demo``, and by other ``livedata`` commands only where
no project is found (see livedata.cli). Its app is labelled ``livedata_demo``, not
``bookstore``, so it can never be mistaken for a project's own app of that name.
"""
