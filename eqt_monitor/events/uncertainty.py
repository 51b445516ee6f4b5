"""How well a least-squares origin is constrained: confidence ellipse, depth and time errors, geometry.

The relocation (``events.associator``) fits ``(east km, north km, depth km, time s)`` by unweighted
least squares. Its covariance is the linearised one at the solution: the sandwich
``(JᵀJ)⁻¹ Jᵀ Σ J (JᵀJ)⁻¹`` (unweighted fit, picks of unequal error), ``Σ = s² diag(σᵢ²)`` with
``σᵢ`` each pick's a-priori time error (:func:`pick_errors`) and the variance factor
``s² = max(1, Σ(rᵢ/σᵢ)² / (n - k))``: the residuals can make the errors larger than the picks'
own (a velocity model that does not fit), never smaller. Errors are given at
:data:`CONFIDENCE` percent as Gaussian regions: the epicentre's 2-D ellipse scaled by
``√χ²₂``, depth and time intervals by ``√χ²₁`` (``records.confidence_scales``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from eqt_monitor.records import Arrival, OriginUncertainty, Pick, confidence_scales

CONFIDENCE = 90.0  # percent
# s: the smallest time error a pick is given: EqT's picking spread plus the travel-time error of a
# 0D/1D model over a network's paths (see docs/DESIGN.md); a larger Monte-Carlo time uncertainty wins
PICK_ERROR_S = {"P": 0.1, "S": 0.2}


def pick_errors(picks: Sequence[Pick]) -> np.ndarray:
    """Each pick's a-priori time error (s): the phase's :data:`PICK_ERROR_S`, or its own
    ``time_uncertainty`` where that is larger."""
    return np.array([max(PICK_ERROR_S[p.phase], p.time_uncertainty or 0.0) for p in picks])


def covariance(jacobian: np.ndarray, residuals: np.ndarray, errors: np.ndarray) -> np.ndarray | None:
    """Covariance of the parameters of an unweighted least-squares fit, scaled by the residuals.

    ``jacobian`` ``(n, k)``: derivatives of the predicted times at the solution; ``residuals``
    and ``errors`` ``(n,)``, seconds. None when the parameters are not all constrained (rank < k).
    """
    n, k = jacobian.shape
    if np.linalg.matrix_rank(jacobian) < k:
        return None
    inverse = np.linalg.inv(jacobian.T @ jacobian)
    scale = max(1.0, float(np.sum((residuals / errors) ** 2)) / (n - k)) if n > k else 1.0
    return scale * inverse @ (jacobian.T * errors**2) @ jacobian @ inverse


def ellipse(epicentral: np.ndarray, scale: float) -> tuple[float, float, float]:
    """Semi-major and semi-minor axes (``scale`` sigma) of the ``(east, north)`` covariance
    ``epicentral`` and the azimuth of the major axis (degrees east of north, in [0, 180))."""
    values, vectors = np.linalg.eigh(epicentral)  # ascending
    east, north = vectors[:, 1]
    azimuth = math.degrees(math.atan2(east, north)) % 180.0
    return scale * math.sqrt(max(values[1], 0.0)), scale * math.sqrt(max(values[0], 0.0)), azimuth


def azimuthal_gap(azimuths: Sequence[float]) -> float:
    """The largest gap (degrees) between station azimuths seen from the epicentre; 360 for one."""
    a = np.unique(np.mod(np.asarray(azimuths, dtype=float), 360.0))
    if len(a) < 2:
        return 360.0
    return float(np.max(np.diff(np.append(a, a[0] + 360.0))))


def origin_uncertainty(jacobian: np.ndarray, arrivals: Sequence[Arrival], depth_resolved: bool = True,
                       confidence: float = CONFIDENCE) -> OriginUncertainty | None:
    """The uncertainty of an origin located from ``arrivals``.

    ``jacobian`` ``(n, 4)``, one row per arrival: derivatives of its predicted time with respect
    to east (km), north (km), depth (km) and origin time (s) at the solution. When the depth was
    not resolved (held at a bound) its column is left out and ``depth_km`` is None. None when the
    arrivals do not constrain the origin (degenerate geometry).
    """
    columns = [0, 1, 2, 3] if depth_resolved else [0, 1, 3]
    residuals = np.array([a.residual for a in arrivals])
    cov = covariance(jacobian[:, columns], residuals, pick_errors([a.pick for a in arrivals]))
    if cov is None:
        return None
    one, two = confidence_scales(confidence)
    major, minor, azimuth = ellipse(cov[:2, :2], two)
    return OriginUncertainty(
        confidence_level=confidence, horizontal_km=major, min_horizontal_km=minor, azimuth_max_horizontal=azimuth,
        depth_km=one * math.sqrt(cov[2, 2]) if depth_resolved else None, time_s=one * math.sqrt(cov[-1, -1]),
        azimuthal_gap=azimuthal_gap([a.azimuth for a in arrivals if a.azimuth is not None]),
        used_phase_count=len(arrivals), used_station_count=len({a.pick.station for a in arrivals}),
        minimum_distance_km=min(a.distance_km for a in arrivals))
