"""Stations from StationXML: coordinates for association, one station entry per band+instrument
group, and the inventory (responses for ML) checked to be StationXML before ObsPy reads it."""
from __future__ import annotations

import logging
from pathlib import Path

from eqt_monitor.config.settings import CODE_PATTERNS, MonitorConfig, StationConfig, code_problem
from eqt_monitor.errors import ConfigError, one_line, show
from eqt_monitor.pipeline.orientation import TOLERANCE_DEG
from eqt_monitor.records import StationKey
from eqt_monitor.sources.stationservice import fetch_inventory, is_station_service

log = logging.getLogger(__name__)


def stationxml_problem(path: Path) -> str | None:
    """Why ``path`` is not a StationXML file (missing, or no ``<FDSNStationXML`` near its start), else ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"{path}: {'StationXML file not found' if isinstance(exc, FileNotFoundError) else exc.strerror}"
    if b"FDSNStationXML" not in head or not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return f"{path}: not a StationXML file (no <FDSNStationXML> element at its start)"
    return None


def read_stationxml(path: Path):
    """The ``obspy.Inventory`` in a StationXML file; a one-line ``ConfigError`` for anything else."""
    from obspy import read_inventory

    problem = stationxml_problem(path)
    if problem:
        raise ConfigError(problem)
    try:
        return read_inventory(str(path), format="STATIONXML")
    except Exception as exc:  # ObsPy raises many kinds on a malformed file
        raise ConfigError(one_line(f"{path}: not a readable StationXML file ({type(exc).__name__}: {exc})")) from None


def channel_orientations(inventory) -> dict[StationKey, dict[str, tuple[float, float]]]:
    """Per station, ``channel code -> (azimuth, dip)`` of every Z/N/E/1/2 channel that has both.

    The latest epoch of a channel wins, whatever span is processed (the config does not know it): when
    a channel's epochs disagree by more than the orientation tolerance, one warning line per station
    names the epochs, so replaying data older than a re-installation is not silently rotated with the
    new sensor's orientation (give a StationXML of that time, or per-station ``orientation:``)."""
    out: dict[StationKey, dict[str, tuple[float, float]]] = {}
    for network in inventory:
        for station in network:
            epochs: dict[tuple[StationKey, str], list] = {}
            for channel in sorted(station.channels, key=lambda c: c.start_date or 0):
                if len(channel.code) != 3 or channel.code[2] not in "ZNE12":
                    continue
                if channel.azimuth is None or channel.dip is None:
                    continue
                key = StationKey(network.code, station.code, channel.location_code or "", channel.code[:2])
                out.setdefault(key, {})[channel.code] = (float(channel.azimuth), float(channel.dip))
                epochs.setdefault((key, channel.code), []).append(channel)
            _warn_disagreeing_epochs(epochs)
    return out


def _warn_disagreeing_epochs(epochs: dict[tuple[StationKey, str], list]) -> None:
    """One line per station whose channel epochs disagree in azimuth or dip by more than ``TOLERANCE_DEG``."""
    found: dict[StationKey, list[str]] = {}
    for (key, code), channels in epochs.items():
        azimuths, dips = [float(c.azimuth) for c in channels], [float(c.dip) for c in channels]
        turn = max(abs((a - b + 180.0) % 360.0 - 180.0) for a in azimuths for b in azimuths)
        if turn > TOLERANCE_DEG or max(dips) - min(dips) > TOLERANCE_DEG:
            found.setdefault(key, []).append(f"{code} " + ", ".join(
                f"{_day(c.start_date)}..{_day(c.end_date)} azimuth {c.azimuth:g} dip {c.dip:g}" for c in channels))
    for key, lines in found.items():
        log.warning("station %s: StationXML epochs disagree in orientation (%s); the latest epoch is used for all "
                    "data", key, "; ".join(lines))


def _day(t) -> str:
    return t.strftime("%Y-%m-%d") if t is not None else ""


def stations_from_inventory(path: str | Path) -> list[StationConfig]:
    """Every station and band+instrument group in a StationXML file, with coordinates.

    A station with several groups (e.g. ``HH?`` broadband and ``HN?`` strong motion) gives
    one entry per group; channels whose third letter is not Z/N/E/1/2 are ignored.
    """
    path = Path(path)
    inventory = read_stationxml(path)
    orientations = channel_orientations(inventory)
    groups: dict[StationKey, StationConfig] = {}
    for network in inventory:
        for station in network:
            for channel in station.channels:
                if len(channel.code) != 3 or channel.code[2] not in "ZNE12":
                    continue
                key = StationKey(network.code, station.code, channel.location_code or "", channel.code[:2])
                for kind, code in zip(CODE_PATTERNS, (key.network, key.station, key.location)):
                    if code_problem(kind, code):
                        raise ConfigError(f"{path}: {kind} code {show(code)}: {code_problem(kind, code)}")
                lat = channel.latitude if channel.latitude is not None else station.latitude
                lon = channel.longitude if channel.longitude is not None else station.longitude
                elev = channel.elevation if channel.elevation is not None else station.elevation
                groups.setdefault(key, StationConfig(key, float(lat), float(lon), float(elev or 0.0),
                                                     orientation=orientations.get(key)))
    if not groups:
        raise ConfigError(f"{path}: no channels with Z/N/E or Z/1/2 components found")
    return sorted(groups.values(), key=lambda s: s.key)


def config_from_inventory(path: str | Path, sources: list[str] | None = None) -> MonitorConfig:
    """A ``MonitorConfig`` with defaults for every station in a StationXML file or an ``fdsn://``
    station service (fetched into the default state folder; ``replay --inventory``)."""
    config = MonitorConfig(path=None, stations=[], sources=list(sources or []))
    if is_station_service(str(path)):
        path = fetch_inventory(str(path), config.state_dir.resolve())
    config.stations, config.inventories = stations_from_inventory(path), [Path(path).resolve()]
    return config
