"""Settings of bench/pull.py's server: the demo's, plus the Django REST framework route."""

from livedata.demo.settings import *  # noqa: F403

ROOT_URLCONF = "bench.pull_bench_app"
