"""Origin uncertainties: the least-squares covariance, its confidence ellipse and the network geometry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eqt_monitor.events.uncertainty import (azimuthal_gap, covariance, ellipse, origin_uncertainty,
                                            pick_errors)
from eqt_monitor.records import Arrival, OriginUncertainty, Pick, StationKey, confidence_scales


def _station(name: str) -> StationKey:
    return StationKey("XX", name, "", "HH")


def test_confidence_scales_match_the_chi_square_tables():
    one, two = confidence_scales(90.0)
    assert one == pytest.approx(1.6449, abs=1e-4)  # sqrt(chi2(1 dof) 90 % = 2.706)
    assert two == pytest.approx(math.sqrt(4.605), abs=1e-3)  # chi2(2 dof) 90 % = 4.605
    assert confidence_scales(68.27)[0] == pytest.approx(1.0, abs=1e-3)
    assert confidence_scales(39.35)[1] == pytest.approx(1.0, abs=1e-3)  # a 1-sigma ellipse covers 39 %


@pytest.mark.parametrize("azimuth", [0.0, 30.0, 90.0, 150.0])
def test_ellipse_recovers_the_axes_and_azimuth_it_was_built_from(azimuth):
    a = math.radians(azimuth)
    major = np.array([math.sin(a), math.cos(a)])  # (east, north)
    minor = np.array([math.cos(a), -math.sin(a)])
    cov = 2.0**2 * np.outer(major, major) + 0.5**2 * np.outer(minor, minor)
    semi_major, semi_minor, az = ellipse(cov, 3.0)
    assert (semi_major, semi_minor) == (pytest.approx(6.0), pytest.approx(1.5))
    assert az == pytest.approx(azimuth % 180.0, abs=1e-9)


def test_azimuthal_gap():
    assert azimuthal_gap([0.0, 90.0, 180.0]) == pytest.approx(180.0)
    assert azimuthal_gap([350.0, 10.0, 100.0]) == pytest.approx(250.0)  # across north
    assert azimuthal_gap([45.0, 45.0]) == azimuthal_gap([45.0]) == 360.0  # one station (P and S)


def test_pick_errors_are_the_phase_prior_or_a_larger_own_uncertainty():
    st = _station("A")
    picks = [Pick(st, "P", 0.0, 0.9), Pick(st, "P", 0.0, 0.9, time_uncertainty=0.3),
             Pick(st, "S", 0.0, 0.9, time_uncertainty=0.05), Pick(st, "S", 0.0, 0.9)]
    assert pick_errors(picks).tolist() == [0.1, 0.3, 0.2, 0.2]


def test_covariance_matches_the_scatter_of_repeated_fits():
    """Monte Carlo on a linear problem with P- and S-like errors (0.1, 0.2 s): the sandwich
    covariance of the unweighted fit is the spread of its solutions, and 90 % ellipses cover 90 %."""
    rng = np.random.default_rng(3)
    jacobian = np.column_stack([rng.normal(0, 0.15, (24, 3)), np.ones(24)])
    errors = np.tile([0.1, 0.2], 12)
    truth = np.array([1.0, -2.0, 8.0, 0.5])
    noise = rng.normal(0.0, 1.0, (4000, 24)) * errors
    fits = np.linalg.lstsq(jacobian, (jacobian @ truth + noise).T, rcond=None)[0].T
    cov = covariance(jacobian, np.zeros(24), errors)
    sigma = np.sqrt(np.diag(cov))
    assert np.allclose(np.std(fits, axis=0), sigma, rtol=0.05)
    assert np.allclose(np.corrcoef(fits.T), cov / np.outer(sigma, sigma), atol=0.05)
    two = confidence_scales(90.0)[1]
    inside = []
    for trial, fit in zip(noise[:1000], fits[:1000]):
        residuals = jacobian @ truth + trial - jacobian @ fit
        c = covariance(jacobian, residuals, errors)[:2, :2]
        d = fit[:2] - truth[:2]
        inside.append(d @ np.linalg.solve(c, d) <= two**2)
    assert 0.88 <= np.mean(inside) <= 0.97  # slightly over 90 %: the residuals only ever widen it


def test_residuals_larger_than_the_pick_errors_widen_the_covariance():
    rng = np.random.default_rng(5)
    jacobian = np.column_stack([rng.normal(0, 0.15, (10, 3)), np.ones(10)])
    errors = np.full(10, 0.1)
    small = covariance(jacobian, np.full(10, 0.01), errors)
    assert np.allclose(small, 0.01 * np.linalg.inv(jacobian.T @ jacobian))  # the prior alone: sigma^2 (J'J)^-1
    big = covariance(jacobian, np.full(10, 0.3), errors)  # residuals 3x the errors, 6 degrees of freedom
    assert np.allclose(big, small * 9 * 10 / 6)


def _square_network(depth: float = 8.0, vp: float = 6.0, vs: float = 3.5):
    """Four stations 10 km N, E, S, W of the epicentre, P and S each: arrivals and their Jacobian."""
    arrivals, rows = [], []
    for name, az in (("N", 0.0), ("E", 90.0), ("S", 180.0), ("W", 270.0)):
        east, north = 10 * math.sin(math.radians(az)), 10 * math.cos(math.radians(az))
        r = math.hypot(10.0, depth)
        for phase, v in (("P", vp), ("S", vs)):
            arrivals.append(Arrival(Pick(_station(name), phase, 0.0, 0.9), 0.0, 10.0 + az / 90, az))
            rows.append([-east / (v * r), -north / (v * r), depth / (v * r), 1.0])
    return arrivals, np.array(rows)


def test_origin_uncertainty_of_a_symmetric_network():
    arrivals, jacobian = _square_network()
    u = origin_uncertainty(jacobian, arrivals)
    assert u.confidence_level == 90.0
    assert u.horizontal_km == pytest.approx(u.min_horizontal_km)  # a circle: same geometry every way
    assert 0.1 < u.horizontal_km < 2.0 and 0.1 < u.depth_km < 10.0 and 0.0 < u.time_s < 1.0
    assert (u.azimuthal_gap, u.used_phase_count, u.used_station_count, u.minimum_distance_km) == (90.0, 8, 4, 10.0)
    fixed = origin_uncertainty(jacobian, arrivals, depth_resolved=False)
    assert fixed.depth_km is None and fixed.time_s < u.time_s  # depth and time trade off: fixing one pins the other


def test_degenerate_geometry_gives_no_uncertainty():
    arrivals, jacobian = _square_network()
    north_south = [0, 1, 4, 5]  # stations on a line through the epicentre cannot tell east from west
    assert origin_uncertainty(jacobian[north_south], [arrivals[i] for i in north_south]) is None


def test_axis_errors_are_the_ellipse_marginals():
    """Along an axis of the ellipse the 1-D error is that semi-axis rescaled from 2-D to 1-D coverage."""
    u = OriginUncertainty(90.0, 2.146, 1.073, 30.0, 3.0, 0.2, 90.0, 10, 5, 4.0)
    assert u.axis_km(30.0) == pytest.approx(1.645, abs=1e-3) and u.axis_km(120.0) == pytest.approx(0.8225, abs=1e-3)
    # north: 1-sigma variance 1 cos^2 30 + 0.25 sin^2 30 = 0.8125
    assert u.axis_km(0.0) == pytest.approx(1.645 * math.sqrt(0.8125), abs=1e-3)
