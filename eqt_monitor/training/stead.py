"""STEAD-format data sets: an HDF5 file of 6000 × 3 windows plus a CSV listing them.

Two HDF5 layouts exist: the current one keeps every trace under ``data/<trace_name>``; the older
one (the STEAD release EQTransformer was trained on) under ``earthquake/local/<trace_name>`` and
``non_earthquake/noise/<trace_name>``. Labels are dataset attributes (``p_arrival_sample``,
``s_arrival_sample``, ``coda_end_sample``, ``snr_db``, ``trace_category``); the CSV names the traces
and their category. Traces are read one at a time: nothing here loads the file whole.
"""
from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from eqt_monitor.errors import UserError
from eqt_monitor.records import WINDOW_SAMPLES

log = logging.getLogger(__name__)

EARTHQUAKE = "earthquake_local"
NOISE = "noise"
GROUPS = ("data", "earthquake/local", "non_earthquake/noise")


@dataclass
class SteadTrace:
    """One labelled window: ``data`` is (6000, 3) float32 [E, N, Z]; sample indices or ``None``."""

    name: str
    data: np.ndarray
    category: str
    p: int | None = None
    s: int | None = None
    coda_end: int | None = None
    snr_db: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    station: str = ""  # NET.STA, what splits group by ("" when unknown)
    source: str = ""  # the data set it came from, what splits stratify by

    @property
    def is_earthquake(self) -> bool:
        """True for earthquake traces (those that carry phase labels)."""
        return self.category == EARTHQUAKE


def _sample(value) -> int | None:
    """A label attribute as a sample index, or ``None`` for missing/NaN/'None'."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else int(number)


def _snr(value) -> np.ndarray:
    """``snr_db`` as three floats; STEAD stores an array attribute, its CSV a string like '[56.8 55.4 47.4]'."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.strip("[] ").split()]
        except ValueError:
            value = []
    arr = np.atleast_1d(np.asarray(value, dtype=float)) if value is not None else np.array([])
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    return arr if arr.size == 3 else np.full(3, np.nan)


def station_from_name(name: str) -> str:
    """``NET.STA`` from a STEAD trace name (``STA.NET_time_EV``) or an NCEDC file name (``NET_STA_time``); else ``""``."""
    head = name.split("_", 1)[0]
    if "." in head:
        station, network = head.split(".", 1)
        return f"{network}.{station}"
    parts = name.split("_")
    return f"{parts[0]}.{parts[1]}" if len(parts) >= 3 and parts[0].isalnum() and parts[1].isalnum() else ""


def _category(name: str, attrs: h5py.AttributeManager, csv_category: str | None) -> str:
    """The trace category from the CSV, else the attrs, else STEAD's name suffix (_EV / _NO)."""
    category = csv_category or attrs.get("trace_category")
    if isinstance(category, bytes):
        category = category.decode()
    if category:
        return str(category)
    if name.endswith("_NO"):
        return NOISE
    if name.endswith("_EV"):
        return EARTHQUAKE
    return ""


class SteadDataset:
    """A STEAD-format HDF5 + CSV pair, read trace by trace.

    ``names`` lists the CSV's traces that exist in the HDF5 file (missing ones are logged and
    skipped); ``read(name)`` returns a :class:`SteadTrace`. ``station`` and ``source`` map each name
    to the CSV's ``station``/``source`` columns (written by :func:`write_stead`), the station
    defaulting to :func:`station_from_name`.
    """

    def __init__(self, hdf5: str | Path, csv_path: str | Path):
        self.hdf5_path = Path(hdf5)
        self.csv_path = Path(csv_path)
        for path in (self.hdf5_path, self.csv_path):
            if not path.is_file():
                raise UserError(f"{path}: no such file")
        try:
            self._file = h5py.File(self.hdf5_path, "r")
        except OSError as exc:
            raise UserError(f"{self.hdf5_path}: not an HDF5 file ({exc})") from exc
        self._groups = [self._file[g] for g in GROUPS if g in self._file]
        if not self._groups:
            raise UserError(f"{self.hdf5_path}: no 'data' or 'earthquake/local' group (not a STEAD-format file)")
        self._csv_category: dict[str, str] = {}
        self.station: dict[str, str] = {}
        self.source: dict[str, str] = {}
        self.names: list[str] = []
        for name, row in self._read_csv():
            if self._find(name) is None:
                log.warning("%s: trace %s listed in %s is not in the file; skipped", self.hdf5_path, name, self.csv_path)
                continue
            self._csv_category[name] = (row.get("trace_category") or "").strip()
            self.station[name] = (row.get("station") or "").strip() or station_from_name(name)
            self.source[name] = (row.get("source") or "").strip()
            self.names.append(name)

    def _read_csv(self) -> Iterator[tuple[str, dict]]:
        with self.csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "trace_name" not in reader.fieldnames:
                raise UserError(f"{self.csv_path}: no 'trace_name' column")
            seen = set()
            for row in reader:
                name = (row.get("trace_name") or "").strip()
                if name and name not in seen:
                    seen.add(name)
                    yield name, row

    def _find(self, name: str) -> h5py.Dataset | None:
        for group in self._groups:
            if name in group:
                return group[name]
        return None

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[SteadTrace]:
        for name in self.names:
            trace = self.read(name)
            if trace is not None:
                yield trace

    def read(self, name: str) -> SteadTrace | None:
        """One trace by name; ``None`` (with a warning) when its waveform is not 6000 × 3 or not finite."""
        dataset = self._find(name)
        if dataset is None:
            raise KeyError(name)
        data = np.asarray(dataset, dtype=np.float32)
        if data.shape != (WINDOW_SAMPLES, 3):
            log.warning("%s: trace %s has shape %s, expected (6000, 3); skipped", self.hdf5_path, name, data.shape)
            return None
        if not np.isfinite(data).all():
            log.warning("%s: trace %s has NaN/inf samples; skipped", self.hdf5_path, name)
            return None
        attrs = dataset.attrs
        category = _category(name, attrs, self._csv_category.get(name))
        trace = SteadTrace(
            name=name,
            data=data,
            category=category,
            snr_db=_snr(attrs.get("snr_db")),
            station=self.station[name],
            source=self.source[name],
        )
        if category == EARTHQUAKE:
            trace.p = _in_window(_sample(attrs.get("p_arrival_sample")))
            trace.s = _in_window(_sample(attrs.get("s_arrival_sample")))
            trace.coda_end = _sample(attrs.get("coda_end_sample"))
        return trace

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()

    def __enter__(self) -> "SteadDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _in_window(sample: int | None) -> int | None:
    return sample if sample is not None and 0 <= sample < WINDOW_SAMPLES else None


CSV_FIELDS = [
    "trace_name", "trace_category", "p_arrival_sample", "s_arrival_sample", "coda_end_sample", "snr_db", "station", "source",
]  # fmt: skip


def write_stead(hdf5: str | Path, csv_path: str | Path, traces: Iterable[SteadTrace], *, layout: str = "data") -> int:
    """Write traces as a STEAD-format HDF5 + CSV; ``layout`` is ``"data"`` or ``"old"``. Returns the count."""
    if layout not in ("data", "old"):
        raise ValueError(f"layout must be 'data' or 'old', not {layout!r}")
    count, seen = 0, set()
    with h5py.File(hdf5, "w") as h5, open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for trace in traces:
            if trace.name in seen:
                raise UserError(f"{hdf5}: two traces are named {trace.name!r} (from {trace.source or 'one source'}); rename one")
            seen.add(trace.name)
            if layout == "data":
                group = "data"
            else:
                group = "earthquake/local" if trace.is_earthquake else "non_earthquake/noise"
            dataset = h5.require_group(group).create_dataset(trace.name, data=np.asarray(trace.data, dtype=np.float32))
            labels = {
                "p_arrival_sample": trace.p,
                "s_arrival_sample": trace.s,
                "coda_end_sample": trace.coda_end,
            }
            dataset.attrs["trace_category"] = trace.category
            dataset.attrs["trace_name"] = trace.name
            for key, value in labels.items():
                dataset.attrs[key] = float("nan") if value is None else float(value)
            dataset.attrs["snr_db"] = np.asarray(trace.snr_db, dtype=float)
            writer.writerow(
                {
                    "trace_name": trace.name,
                    "trace_category": trace.category,
                    **{k: "" if v is None else v for k, v in labels.items()},
                    "snr_db": "[" + " ".join(f"{v:.2f}" for v in trace.snr_db) + "]",
                    "station": trace.station,
                    "source": trace.source,
                }
            )
            count += 1
    return count
