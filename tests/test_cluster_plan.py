"""The cluster replay's plan: how a span is cut into (station group, time chunk) tasks, how many
stations a task gets for the workers there are, and which pieces a re-run leaves out."""
from __future__ import annotations

from pathlib import Path

from eqt_monitor.cluster.tasks import MAX_GROUP, auto_group, plan_chunks, station_chunk_key, time_spans
from eqt_monitor.config import load_config

HOUR = 3600.0


def network(tmp_path: Path, n: int):
    """A config of ``n`` stations on one SDS source (nothing is read: planning only)."""
    path = tmp_path / "net.yaml"
    path.write_text(f"source: sds://{tmp_path}/sds\nstations:\n"
                    + "".join(f"  - {{network: XX, station: S{i:03d}, channels: 'HH?'}}\n" for i in range(n)))
    return load_config(path)


def test_time_spans_cover_the_span_once_and_the_last_is_cut_at_the_end():
    assert time_spans(0.0, 2.5 * HOUR, HOUR) == [(0.0, HOUR), (HOUR, 2 * HOUR), (2 * HOUR, 2.5 * HOUR)]
    assert time_spans(10.0, 20.0, 86400.0) == [(10.0, 20.0)]


def test_auto_group_splits_a_short_span_across_stations_and_a_long_one_across_time(tmp_path):
    config = network(tmp_path, 40)
    assert auto_group(config, None, spans=1, workers=8) == 5  # one day on 8 workers: 8 tasks of 5
    assert auto_group(config, None, spans=1, workers=64) == 1  # more workers than stations
    assert auto_group(config, None, spans=365, workers=8) == MAX_GROUP  # a year: time keeps them busy
    assert auto_group(config, None, spans=4, workers=8) == 20 if 20 <= MAX_GROUP else MAX_GROUP
    assert auto_group(network(tmp_path, 3), None, spans=30, workers=2) == 3


def test_plan_groups_stations_by_time_then_group(tmp_path):
    config = network(tmp_path, 5)
    chunks = plan_chunks(config, None, 0.0, 2 * HOUR, HOUR, group_size=2)
    assert [(c.index, c.start, [k.station for k in c.stations]) for c in chunks] == [
        (0, 0.0, ["S000", "S001"]), (1, 0.0, ["S002", "S003"]), (2, 0.0, ["S004"]),
        (3, HOUR, ["S000", "S001"]), (4, HOUR, ["S002", "S003"]), (5, HOUR, ["S004"])]
    assert len({c.task_key("s") for c in chunks}) == 6


def test_plan_leaves_out_finished_station_pieces_whatever_grouping_finished_them(tmp_path):
    config = network(tmp_path, 4)
    first = plan_chunks(config, None, 0.0, 2 * HOUR, HOUR, group_size=1, settings="s")
    # a one-station run finished S000 and S002 in the first hour, S001 in the second
    done = {key for c in (first[0], first[2], first[5]) for key in c.state_keys("s")}
    again = plan_chunks(config, None, 0.0, 2 * HOUR, HOUR, group_size=4, settings="s", finished=done)
    assert [(c.start, [k.station for k in c.stations]) for c in again] == [
        (0.0, ["S001", "S003"]), (HOUR, ["S000", "S002", "S003"])]
    # other settings (another model, other thresholds): nothing counts as done
    assert len(plan_chunks(config, None, 0.0, 2 * HOUR, HOUR, group_size=4, settings="t", finished=done)) == 2
    # a group's keys are its stations' one-station keys
    key = first[1].stations[0]
    assert again[0].state_keys("s")[0] == station_chunk_key("s", again[0].uri, key, 0.0, HOUR)
