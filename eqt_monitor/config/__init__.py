"""``stations.yaml`` → ``MonitorConfig``: the settings of every stage, validated with one-line
errors naming file, line and field (``load``), from a bounded YAML reader (``document``);
stations can also come from StationXML (``stationxml``)."""
from eqt_monitor.config.load import load_config
from eqt_monitor.config.settings import ModelConfig, MonitorConfig, StationConfig, cluster_spec_problem, code_problem
from eqt_monitor.config.stationxml import (
    config_from_inventory, read_stationxml, stationxml_problem, stations_from_inventory,
)

__all__ = ["ModelConfig", "MonitorConfig", "StationConfig", "cluster_spec_problem", "code_problem", "config_from_inventory", "load_config",
           "read_stationxml", "stationxml_problem", "stations_from_inventory"]
