from livedata.capture import admin  # noqa: F401  (registers the change-log admin)
