"""A program from Debian's packages, installed when missing (as root, as ./dev's
``ensure_package`` does): HAProxy and nginx for the deployment tests and benches."""

from __future__ import annotations

import os
import shutil
import subprocess


def binary(name: str, package: str | None = None) -> str | None:
    """The path of program ``name`` (sbin included), installing ``package`` (default:
    ``name``) with apt-get when it is missing and we are root; None when it cannot be."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing Debian's {package or name}...", flush=True)
        apt = ["apt-get", "install", "-y", "-q", package or name]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(apt, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
            subprocess.run(apt, capture_output=True, env=env)
        found = shutil.which(name, path=path)
    return found
