"""Velocity models for association: constant-velocity layers, exact first-arrival times in them
(direct rays and head waves, so no eikonal solver is needed), and PyOcto's travel-time table."""
from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Layer:
    """A constant-velocity layer from ``top_km`` (below sea level) down to the next layer's top."""

    top_km: float
    vp: float
    vs: float


def layered_travel_times(layers: Iterable[Layer], phase: str, x_km: np.ndarray, z_km: np.ndarray) -> np.ndarray:
    """First-arrival times (s) from a surface source to offsets ``x_km`` and depths ``z_km``.

    Returns an ``(len(x), len(z))`` array: the faster of the direct ray (ray parameter found by
    bisection on the offset it reaches) and every head wave along the top of a layer that is
    faster than all layers above it, beyond its critical distance.
    """
    layers = list(layers)
    tops = np.array([la.top_km for la in layers], float)
    v = np.array([la.vp if phase == "P" else la.vs for la in layers], float)
    bottoms = np.append(tops[1:], np.inf)
    x = np.asarray(x_km, float)[:, None]
    z = np.asarray(z_km, float)
    tops0 = tops - tops[0]  # the surface is the top of the first layer
    bottoms0 = bottoms - tops[0]

    def thickness(upper: np.ndarray | float, lower: np.ndarray | float) -> np.ndarray:
        """(nz, nlayers) thickness of each layer between depths ``upper`` and ``lower``."""
        upper = np.broadcast_to(np.asarray(upper, float), z.shape)[:, None]
        lower = np.broadcast_to(np.asarray(lower, float), z.shape)[:, None]
        return np.clip(np.minimum(lower, bottoms0) - np.maximum(upper, tops0), 0.0, None)

    h = thickness(0.0, z)  # (nz, nl)
    vmax = np.where(h > 0, v, 0.0).max(axis=1)  # fastest layer each ray crosses
    vmax = np.where(vmax > 0, vmax, v[0])
    lo = np.zeros((x.shape[0], z.size))
    hi = np.ones_like(lo)
    hv = h[None, :, :]
    v_crossed = np.minimum(v[None, :], vmax[:, None])  # layers not crossed have h = 0; keep their sqrt real
    with np.errstate(divide="ignore", invalid="ignore"):  # u -> 1 only on surface rows, replaced below
        for _ in range(60):  # bisection on p = u / vmax for the offset x
            u = (lo + hi) / 2
            pv = (u / vmax)[..., None] * v_crossed  # p * v_i
            reach = (hv * pv / np.sqrt(1 - pv**2)).sum(axis=-1)
            too_far = reach > x
            hi = np.where(too_far, u, hi)
            lo = np.where(too_far, lo, u)
        pv = (lo / vmax)[..., None] * v_crossed
        direct = (hv / (v_crossed * np.sqrt(1 - pv**2))).sum(axis=-1)
    # a receiver at the surface is reached along the top layer
    direct = np.where(z[None, :] > 0, direct, x / v[0])
    best = direct
    for k in range(1, len(layers)):
        if v[k] <= v[:k].max():
            continue  # no critical refraction into a slower layer
        eta = np.sqrt(1 / v[:k] ** 2 - 1 / v[k] ** 2)
        tan = v[:k] / v[k] / np.sqrt(1 - (v[:k] / v[k]) ** 2)
        legs = thickness(0.0, tops0[k])[:, :k] + thickness(z, tops0[k])[:, :k]  # down and back up
        intercept = (legs * eta).sum(axis=1)
        critical = (legs * tan).sum(axis=1)
        head = x / v[k] + intercept[None, :]
        ok = (z[None, :] <= tops0[k]) & (x >= critical[None, :])
        best = np.minimum(best, np.where(ok, head, np.inf))
    return best


@dataclass(frozen=True)
class TravelTimeTable:
    """First-arrival times on a regular (offset, depth below the model top) grid, PyOcto's 1D layout."""

    delta: float
    p: np.ndarray  # (nx, nz) seconds
    s: np.ndarray

    @classmethod
    def build(cls, layers: tuple[Layer, ...], xdist: float, zdist: float, delta: float) -> TravelTimeTable:
        """Tabulate ``layers`` to ``xdist`` km offset and ``zdist`` km depth every ``delta`` km."""
        x = np.arange(int(xdist / delta) + 1) * delta
        z = np.arange(int(zdist / delta) + 1) * delta
        return cls(delta, layered_travel_times(layers, "P", x, z), layered_travel_times(layers, "S", x, z))

    def write(self, path: Path) -> None:
        """PyOcto's binary format: ``struct('iid', nx, nz, delta)`` then P and S times as (nx, nz) float64."""
        with open(path, "wb") as f:
            f.write(struct.pack("iid", *self.p.shape, self.delta))
            for times in (self.p, self.s):
                f.write(np.ascontiguousarray(times, dtype=np.float64).tobytes())

    def lookup(self, phase_is_p: np.ndarray, offset: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the table (clamped to its edges)."""
        nx, nz = self.p.shape
        fx = np.clip(offset / self.delta, 0, nx - 1.000001)
        fz = np.clip(depth / self.delta, 0, nz - 1.000001)
        ix, iz = fx.astype(int), fz.astype(int)
        wx, wz = fx - ix, fz - iz
        out = np.empty(len(offset))
        for table, mask in ((self.p, phase_is_p), (self.s, ~phase_is_p)):
            i, k, a, b = ix[mask], iz[mask], wx[mask], wz[mask]
            out[mask] = ((1 - a) * (1 - b) * table[i, k] + a * (1 - b) * table[i + 1, k]
                         + (1 - a) * b * table[i, k + 1] + a * b * table[i + 1, k + 1])
        return out
