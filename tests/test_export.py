"""Export: QuakeML 1.2 schema validity, ObsPy round trip, byte-identical re-export, CSVs, the CLI."""
from __future__ import annotations

import csv
import dataclasses
import math

import pytest
from obspy import UTCDateTime, read_events
from obspy.io.quakeml.core import _validate

from eqt_monitor.catalog.export import EQT_CSV_COLUMNS, export_quakeml, write_eqt_csv, write_events_csv
from eqt_monitor.catalog.ids import pick_id
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.cli import main
from eqt_monitor.records import (Arrival, Detection, Event, Magnitude, Origin, OriginUncertainty, Pick, StationKey,
                                 StationMagnitude)

T0 = 1601510400.0
A, B, C = (StationKey("CI", s, "", "HH") for s in ("BOM", "COA", "CRR"))
SHA = "07b3ffc8" + "1" * 56
# a 90 % ellipse 1.2 x 0.6 km, major axis N30E; depth +- 2.5 km, time +- 0.15 s; gap 120 deg, nearest 10 km
KM = 111.19492664455873  # per degree on ObsPy's sphere
UNCERTAINTY = OriginUncertainty(90.0, 1.2, 0.6, 30.0, 2.5, 0.15, 120.0, 4, 3, 10.0)


@pytest.fixture()
def catalog(tmp_path) -> Catalog:
    cat = Catalog(tmp_path / "c.sqlite")
    cat.set_stations({"CI.BOM.": (32.9, -115.5, -50.0), "CI.COA.": (32.86, -115.1, 10.0), "CI.CRR.": (32.88, -115.9, 0.0)})
    first = [Pick(A, "P", T0 + 12.34, 0.91, 14.2, 5300.0), Pick(A, "S", T0 + 14.1, 0.62, 8.0),
             Pick(B, "P", T0 + 13.5, 0.77), Pick(C, "S", T0 + 16.0, 0.45)]
    second = [Pick(A, "P", T0 + 70.0, 0.5), Pick(B, "P", T0 + 71.0, 0.6), Pick(C, "P", T0 + 72.25, 0.7)]
    first, second = ([dataclasses.replace(p, id=pick_id(p, SHA)) for p in picks] for picks in (first, second))
    cat.add_picks(first + second, model="original", weights_sha256=SHA)
    cat.add_detections([Detection(A, T0 + 12.0, T0 + 20.0, 0.8), Detection(B, T0 + 13.6, T0 + 18.0, 0.6),
                        Detection(C, T0 + 90.0, T0 + 95.0, 0.4)], model="original", weights_sha256=SHA)
    ml = Magnitude("ML", 2.31, 0.12, 2, "smi:eqt-monitor/magnitude/ML/hutton-boore-1987", None,
                   (StationMagnitude(A, 2.2, 1.5e-6, 12.0), StationMagnitude(B, 2.4, 9.0e-7, 30.5)))
    e1 = Event(Origin(T0 + 10.0, 33.01, -115.55, 7.5, 0.08, "PyOcto 0.2.2 + least squares, 0D", UNCERTAINTY),
               tuple(Arrival(p, 0.01 * (i - 1), 10.0 + 5 * i, 40.0 * i) for i, p in enumerate(first)), ml)
    unresolved = dataclasses.replace(UNCERTAINTY, depth_km=None)  # depth held at a bound
    e2 = Event(Origin(T0 + 66.0, 32.95, -115.4, 12.25, 0.2, "PyOcto 0.2.2 + least squares, 0D", unresolved),
               tuple(Arrival(p, -0.05, 20.0, 100.0) for p in second),
               Magnitude("ML", None, None, 0, "smi:eqt-monitor/magnitude/ML/hutton-boore-1987",
                         reason="CI.BOM.: no usable response"))
    cat.add_events([e1, e2])
    return cat


def test_quakeml_validates_against_the_schema(catalog, tmp_path):
    path = tmp_path / "out.xml"
    assert export_quakeml(catalog, path) == 2
    assert _validate(str(path)) is True
    text = path.read_text()
    for element in ("originUncertainty", "maxHorizontalUncertainty", "azimuthalGap", "minimumDistance",
                    "confidenceLevel"):
        assert f"<{element}>" in text, element  # the schema check above covered them


def test_quakeml_origin_uncertainty(catalog, tmp_path):
    path = tmp_path / "out.xml"
    export_quakeml(catalog, path)
    first, second = (e.preferred_origin() for e in read_events(str(path)))
    u = first.origin_uncertainty
    assert (u.horizontal_uncertainty, u.max_horizontal_uncertainty, u.min_horizontal_uncertainty) == (1200, 1200, 600)
    assert u.azimuth_max_horizontal_uncertainty == 30.0 and u.confidence_level == 90.0
    assert u.preferred_description == "uncertainty ellipse"
    assert (first.depth_errors.uncertainty, first.depth_errors.confidence_level) == (2500.0, 90.0)
    assert first.time_errors.uncertainty == 0.15
    # the ellipse's 1-D marginals: sigma^2 = (a^2 cos^2 + b^2 sin^2) / chi2(2 dof, 90 %), x chi2(1 dof, 90 %)
    north = math.sqrt((1.2**2 * 0.75 + 0.6**2 * 0.25) / 4.605) * 1.6449
    east = math.sqrt((1.2**2 * 0.25 + 0.6**2 * 0.75) / 4.605) * 1.6449
    assert first.latitude_errors.uncertainty * KM == pytest.approx(north, rel=1e-3)
    assert first.longitude_errors.uncertainty * KM * math.cos(math.radians(33.01)) == pytest.approx(east, rel=1e-3)
    assert first.latitude_errors.confidence_level == 90.0
    q = first.quality
    assert (q.azimuthal_gap, q.used_phase_count, q.used_station_count) == (120.0, 4, 3)
    assert q.minimum_distance * KM == pytest.approx(10.0, abs=1e-3)
    # a depth that was not resolved has no depth error, the rest is there
    assert second.depth_errors.uncertainty is None and second.origin_uncertainty.horizontal_uncertainty == 1200


def test_quakeml_round_trip_keeps_the_content(catalog, tmp_path):
    path = tmp_path / "out.xml"
    export_quakeml(catalog, path, agency="TEST")
    back = read_events(str(path))
    stored = catalog.events()
    assert [str(e.resource_id) for e in back] == [e.id for e in stored]
    ev, src = back[0], stored[0]
    o = ev.preferred_origin()
    assert o.time == UTCDateTime(T0 + 10.0)
    assert (o.latitude, o.longitude, o.depth) == (33.01, -115.55, 7500.0)
    assert o.quality.standard_error == pytest.approx(0.08) and o.quality.used_station_count == 3
    assert ev.creation_info.agency_id == "TEST"
    assert ev.creation_info.author == f"original {SHA}"
    picks = {str(p.resource_id): p for p in ev.picks}
    assert len(picks) == 4
    for a in src.arrivals:
        p = picks[a.pick_id]
        assert p.time == UTCDateTime(a.pick.time)
        assert p.phase_hint == a.pick.phase
        assert (p.waveform_id.network_code, p.waveform_id.station_code) == (a.pick.station.network, a.pick.station.station)
        assert float(p.extra["probability"]["value"]) == pytest.approx(a.pick.probability, abs=1e-4)
    first_pick = picks[src.arrivals[0].pick_id]
    assert float(first_pick.extra["snr_db"]["value"]) == pytest.approx(14.2)
    residuals = {str(a.pick_id): a.time_residual for a in o.arrivals}
    assert residuals == {a.pick_id: pytest.approx(a.residual) for a in src.arrivals}
    distances = {str(a.pick_id): a.distance * KM for a in o.arrivals}
    assert distances == {a.pick_id: pytest.approx(a.distance_km, abs=1e-3) for a in src.arrivals}
    m = ev.preferred_magnitude()
    assert (m.mag, m.magnitude_type, m.station_count) == (2.31, "ML", 2)
    assert m.mag_errors.uncertainty == pytest.approx(0.12)
    assert sorted(s.mag for s in ev.station_magnitudes) == [2.2, 2.4]
    assert sorted(a.generic_amplitude for a in ev.amplitudes) == [9.0e-7, 1.5e-6]
    # the event without a magnitude says why
    assert back[1].preferred_magnitude() is None
    assert "no usable response" in back[1].comments[0].text


def test_reexport_is_byte_identical(catalog, tmp_path):
    for name, write in (("q.xml", export_quakeml), ("e.csv", write_events_csv), ("p.csv", write_eqt_csv)):
        write(catalog, tmp_path / f"1{name}")
        write(Catalog(catalog.path), tmp_path / f"2{name}")  # a fresh connection, as a later run would
        assert (tmp_path / f"1{name}").read_bytes() == (tmp_path / f"2{name}").read_bytes(), name


def test_span_selects_events_by_origin_time(catalog, tmp_path):
    assert export_quakeml(catalog, tmp_path / "a.xml", start=T0 + 60) == 1
    assert len(read_events(str(tmp_path / "a.xml"))) == 1
    assert export_quakeml(catalog, tmp_path / "b.xml", start=T0 + 100) == 0
    assert _validate(str(tmp_path / "b.xml")) is True


def test_events_csv(catalog, tmp_path):
    write_events_csv(catalog, tmp_path / "e.csv")
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert [r["origin_time"] for r in rows] == ["2020-10-01T00:00:10.000000Z", "2020-10-01T00:01:06.000000Z"]
    assert rows[0]["ml"] == "2.31" and rows[0]["arrivals"] == "4" and rows[0]["stations"] == "3"
    assert rows[1]["ml"] == "" and "no usable response" in rows[1]["ml_reason"]
    first = rows[0]
    assert list(first)[:12] == ["event_id", "origin_time", "latitude", "longitude", "depth_km", "rms_s", "arrivals",
                                "stations", "ml", "ml_uncertainty", "ml_stations", "ml_reason"]
    assert (first["confidence_level"], first["horizontal_uncertainty_km"], first["min_horizontal_uncertainty_km"],
            first["azimuth_max_horizontal"], first["depth_uncertainty_km"], first["time_uncertainty_s"],
            first["azimuthal_gap"], first["minimum_distance_km"]) == ("90", "1.200", "0.600", "30.0", "2.500", "0.150",
                                                                       "120.0", "10.00")
    assert rows[1]["depth_uncertainty_km"] == "" and rows[1]["horizontal_uncertainty_km"] == "1.200"


def test_eqt_picks_csv(catalog, tmp_path):
    assert write_eqt_csv(catalog, tmp_path / "p.csv") == 3
    with open(tmp_path / "p.csv") as f:
        assert next(csv.reader(f)) == EQT_CSV_COLUMNS
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    bom = rows[0]
    assert (bom["network"], bom["station"], bom["instrument_type"]) == ("CI", "BOM", "HH")
    assert bom["station_lat"] == "32.90000" and bom["station_elv"] == "-50.0"
    assert bom["event_start_time"] == "2020-10-01 00:00:12"
    assert bom["p_arrival_time"] == "2020-10-01 00:00:12.340000" and bom["p_probability"] == "0.91"
    assert bom["p_snr"] == "14.2"
    assert bom["s_arrival_time"] == "2020-10-01 00:00:14.100000" and bom["s_probability"] == "0.62"
    # COA's P at 13.5 s is 0.1 s before its detection starts: still its P; it has no S
    assert rows[1]["p_arrival_time"] == "2020-10-01 00:00:13.500000" and rows[1]["s_arrival_time"] == ""
    assert rows[2]["p_arrival_time"] == ""  # CRR's detection has no picks


def test_cli_export(catalog, tmp_path, capsys):
    out = tmp_path / "cli.xml"
    assert main(["export", "--db", str(catalog.path), "--format", "quakeml", "--out", str(out),
                 "--start", "2020-10-01T00:00:00", "--end", "2020-10-01T00:01:00"]) == 0
    assert "wrote 1 events" in capsys.readouterr().out
    assert len(read_events(str(out))) == 1
    assert main(["export", "--db", str(tmp_path / "missing.sqlite"), "--format", "csv", "--out", str(out)]) == 2
    assert "missing.sqlite: no such catalog file" in capsys.readouterr().err
    assert main(["export", "--db", str(catalog.path), "--format", "csv", "--out", str(out), "--start", "yesterday"]) == 2
    assert "--start: not a UTC time" in capsys.readouterr().err
