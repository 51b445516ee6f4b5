"""StationLookup: which configured station a record's channel belongs to (asked once per live record)."""
from __future__ import annotations

import itertools

from eqt_monitor.records import StationKey
from eqt_monitor.sources.base import StationLookup, matches

HH = StationKey("CX", "PB01", "", "HH")
EH = StationKey("CX", "PB01", "", "EH")
ANY = StationKey("CX", "PB02", "00", "")
CHANNELS = [("CX", "PB01", "", c) for c in ("HHZ", "HHN", "EHZ", "EHE", "BHZ", "HH")] + [
    ("CX", "PB02", "00", "HHZ"), ("CX", "PB02", "", "HHZ"), ("CX", "PB03", "", "HHZ"), ("XX", "PB01", "", "HHZ")]


def test_lookup_agrees_with_a_scan_over_every_station():
    stations = [HH, EH, ANY]
    lookup = StationLookup(stations)
    for channel in CHANNELS * 2:  # the second pass answers from the cache
        assert lookup.find(*channel) == next((k for k in stations if matches(k, *channel)), None), channel
    assert lookup.find("CX", "PB01", "", "EHN") == EH
    assert lookup.find("CX", "PB02", "00", "LHZ") == ANY
    assert lookup.find("CX", "PB03", "", "HHZ") is None


def test_added_and_removed_stations_take_effect_after_cached_answers():
    lookup = StationLookup([HH])
    assert lookup.find("CX", "PB01", "", "EHZ") is None
    lookup.add(EH)
    assert lookup.find("CX", "PB01", "", "EHZ") == EH
    lookup.remove(HH)
    assert lookup.find("CX", "PB01", "", "HHZ") is None
    lookup.remove(HH)  # twice: no error
    assert [lookup.find(*c) for c in itertools.islice(CHANNELS, 4)] == [None, None, EH, EH]
