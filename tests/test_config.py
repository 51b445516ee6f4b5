"""stations.yaml loading: the example works, and each mistake is one line naming file, line and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from eqt_monitor.config import load_config, stations_from_inventory
from eqt_monitor.errors import ConfigError
from eqt_monitor.records import StationKey

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
source: sds://archive
stations:
  - network: CX
    station: PB01
    channels: HH?
    latitude: -21.0
    longitude: -69.5
model:
  name: original
  step: 1000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stations.yaml"
    path.write_text(text)
    return path


def test_example_config_loads():
    config = load_config(ROOT / "stations.yaml")
    assert [s.key for s in config.stations] == [StationKey("CX", "PB01", "", "HH"), StationKey("CX", "PB02", "", "HH")]
    assert config.sources == [f"sds://{(ROOT.parent / 'shared/data/chile_2014/sds').resolve()}"]
    assert config.coordinates()["CX.PB02."] == (-21.31973, -69.89603, 1015.0)
    assert config.metrics_addr.startswith("127.0.0.1:")


def test_relative_paths_resolve_against_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.sources == [f"sds://{tmp_path.resolve() / 'archive'}"]
    assert config.catalog == tmp_path.resolve() / "catalog.sqlite"
    assert config.model.step == 1000 and config.model.detection_threshold == 0.3


def test_serve_events_is_off_unless_asked(tmp_path):
    assert load_config(write(tmp_path, GOOD)).serve_events is False
    config = load_config(write(tmp_path, GOOD + "metrics:\n  addr: 127.0.0.1:0\n  serve_events: true\n"))
    assert config.serve_events is True and config.metrics_addr == "127.0.0.1:0"


@pytest.mark.parametrize(
    "old, new, line, field",
    [
        ("    latitude: -21.0", "    latitude: north", 6, "stations[0].latitude"),
        ("    channels: HH?", "    channels: HHZ", 5, "stations[0].channels"),
        ("  step: 1000", "  step: 5001", 10, "model.step"),
        ("  name: original", "  name: original\n  colour: red", 10, "model.colour"),
        ("  step: 1000", "  step: 1000\n  p: 1.5", 11, "model.p"),
        ("    station: PB01\n", "", 3, "stations[0]"),
        ("source: sds://archive", "source: ftp://host/x", 1, "source"),
        ("    longitude: -69.5\n", "", 3, "stations[0]"),
        ("  step: 1000", "  step: 1000\nmetrics:\n  serve_events: sometimes", 12, "metrics.serve_events"),
    ],
)
def test_mistakes_name_file_line_and_field(tmp_path, old, new, line, field):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {field}"), message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  - network: CX", "  - network: [CX"))
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: invalid YAML"):
        load_config(path)


def test_duplicate_station_is_refused(tmp_path):
    text = GOOD.replace("model:", "  - {network: CX, station: PB01, channels: \"HH?\"}\nmodel:")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}:8: stations\[1\]: CX.PB01..HH\? is listed twice"):
        load_config(path)


def test_inventory_entry_expands_to_every_station(shared, tmp_path):
    xml = shared / "data/salton_sea_2020/stations.xml"
    path = write(tmp_path, f"stations:\n  - inventory: {xml}\n")
    config = load_config(path)
    assert len(config.stations) == 16
    assert all(s.key.channel_prefix == "HH" and s.has_coordinates for s in config.stations)
    # Every station lies in the Salton Sea / Imperial Valley region.
    assert all(32.0 < s.latitude < 34.5 and -117.0 < s.longitude < -114.5 for s in config.stations)


def test_inventory_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="StationXML file not found"):
        stations_from_inventory(tmp_path / "nope.xml")


def test_gap_policy_is_validated_with_its_line(tmp_path):
    path = write(tmp_path, GOOD + "buffer:\n  interpolate_max_s: 5\n  zero_fill_max_s: 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:12: buffer: gap policy: need 0 <= interpolate_max_s"):
        load_config(path)


def test_association_section_builds_a_layered_model(tmp_path):
    text = GOOD + ("association:\n  n_picks: 8\n  zlim: [0, 20]\n  layers:\n"
                   "    - {top_km: 0, vp: 5.0, vs: 2.9}\n    - {top_km: 5, vp: 6.3, vs: 3.6}\n")
    config = load_config(write(tmp_path, text))
    assert config.association.n_picks == 8 and config.association.zlim == (0.0, 20.0)
    assert [(l.top_km, l.vp, l.vs) for l in config.association.layers] == [(0.0, 5.0, 2.9), (5.0, 6.3, 3.6)]


@pytest.mark.parametrize(
    "section, line, field",
    [
        ("association:\n  vp: 3\n  vs: 4\n", 12, "association"),
        ("association:\n  n_picks: many\n", 12, "association.n_picks"),
        ("association:\n  layers:\n    - {top_km: 0, vp: 5.0}\n", 13, "association.layers[0]"),
        ("association:\n  speed: 3\n", 12, "association.speed"),
    ],
)
def test_association_mistakes_name_their_line(tmp_path, section, line, field):
    path = write(tmp_path, GOOD + section)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:{line}: {field}"), str(info.value)
