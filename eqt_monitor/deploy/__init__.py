"""Files a service install needs, shipped in the wheel: the systemd unit (``eqt-monitor.service``),
the Grafana dashboard (``grafana-dashboard.json``) and the Prometheus alert rules (``alerts.yml``). ``path(name)`` finds one on disk."""
from __future__ import annotations

import importlib.resources
from pathlib import Path


def path(name: str) -> Path:
    """The installed file ``name`` of this folder."""
    return Path(str(importlib.resources.files(__name__) / name))
