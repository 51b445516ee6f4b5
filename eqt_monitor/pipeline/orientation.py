"""Horizontals to north and east: the rotation of a station's [E, N, Z] rows by its channels'
azimuths and dips (ObsPy's ``rotate2zne``).

The buffer puts ``N`` or ``1`` in the N slot and ``E`` or ``2`` in the E slot. With the station's
orientation (``channel code -> (azimuth, dip)`` from the inventory) a ``Rotation`` turns those
rows into true N/E/Z when a horizontal is off north/east (``1``/``2``, or a misoriented ``N``/``E``)
by more than ``TOLERANCE_DEG``; rows that need nothing are left bit for bit as they are. Without
orientation for ``1``/``2`` channels they stay as they are (``1``→N, ``2``→E) with one warning
naming the station. The rotation is per sample, so how the data is cut into segments does not
change it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from obspy.signal.rotate import rotate2zne

from eqt_monitor.records import StationKey

log = logging.getLogger(__name__)

TOLERANCE_DEG = 1.0  # a horizontal this close to north/east (and to horizontal) is used as it is
NOMINAL = {0: (90.0, 0.0), 1: (0.0, 0.0), 2: (0.0, -90.0)}  # slot -> (azimuth, dip): E, N, Z


def _off(actual: tuple[float, float], nominal: tuple[float, float]) -> bool:
    azimuth = abs((actual[0] - nominal[0] + 180.0) % 360.0 - 180.0)
    return azimuth > TOLERANCE_DEG or abs(actual[1] - nominal[1]) > TOLERANCE_DEG


class Rotation:
    """The rotation of one station's [E, N, Z] rows, from the channels seen in each slot."""

    def __init__(self, key: StationKey, orientation: Mapping[str, tuple[float, float]] | None) -> None:
        self.key = key
        self.orientation = dict(orientation or {})
        self._channels: dict[int, str] = {}  # slot -> channel code seen there
        self._matrix: np.ndarray | None = None
        self._warned = False

    def saw(self, slot: int, channel: str) -> None:
        """A record of ``channel`` went to ``slot`` (0 E, 1 N, 2 Z)."""
        if self._channels.get(slot) == channel:
            return
        self._channels[slot] = channel
        self._matrix = self._build()

    def _build(self) -> np.ndarray | None:
        """The 3×3 matrix taking [E, N, Z] slot rows to true [E, N, Z], or None to leave them."""
        horizontals = [self._channels.get(slot) for slot in (0, 1)]
        if None in horizontals:
            return None
        known = [self.orientation.get(c) for c in horizontals]
        if None in known:
            if any(c[-1] in "12" for c in horizontals) and not self._warned:
                self._warned = True
                log.warning("station %s: no azimuth/dip for %s in the inventory: using 1 as N and 2 as E, unrotated",
                            self.key, " and ".join(sorted(c for c, o in zip(horizontals, known) if o is None)))
            return None
        z = self.orientation.get(self._channels.get(2, ""), NOMINAL[2])
        slots = {0: known[0], 1: known[1], 2: z}
        if not any(_off(slots[s], NOMINAL[s]) for s in slots):
            return None
        # columns: where a unit signal in each slot ends up in true (Z, N, E)
        columns = []
        for slot in range(3):
            unit = [np.array([float(slot == s)]) for s in (2, 1, 0)]
            zne = rotate2zne(unit[0], *slots[2], unit[1], *slots[1], unit[2], *slots[0])
            columns.append([zne[2][0], zne[1][0], zne[0][0]])  # as E, N, Z
        return np.array(columns, dtype=np.float64).T

    @property
    def turns(self) -> bool:
        """Whether :meth:`apply` changes rows (a horizontal off north/east with known orientation)."""
        return self._matrix is not None

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` ([n, 3] E, N, Z slots) rotated to true E, N, Z (the same array when nothing to do)."""
        if self._matrix is None:
            return rows
        m, data = self._matrix, rows.astype(np.float64)
        out = np.empty_like(rows)
        for i in range(3):
            out[:, i] = m[i, 0] * data[:, 0] + m[i, 1] * data[:, 1] + m[i, 2] * data[:, 2]
        return out
