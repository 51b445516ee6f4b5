"""Published weights: pulling over real HTTP (127.0.0.1), sha256 refusal, offline install, the CLI."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading

import pytest

from eqt_monitor import cli
from eqt_monitor.errors import WeightsError
from eqt_monitor.model import registry

ORIGINAL_SHA256 = "07b3ffc8065164ece44a367b145b0db66e25586d89269ec4d8c340c34966d452"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared):
    """An HTTP server on 127.0.0.1 serving a copy of the original weights and a tampered copy."""
    root = tmp_path_factory.mktemp("www")
    shutil.copy(shared / "models" / "eqt_original.h5", root / "EqT_original_model.h5")
    tampered = bytearray((root / "EqT_original_model.h5").read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    (root / "tampered.h5").write_bytes(bytes(tampered))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "tampered_sha256": hashlib.sha256(tampered).hexdigest(),
           "root": root}
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/EqT_original_model.h5"


def test_pull_downloads_verifies_and_keeps_a_good_copy(served, tmp_path):
    path = registry.pull("original", cache=tmp_path, url=f"{served['url']}/EqT_original_model.h5")
    assert path == tmp_path / "eqt_original.h5"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ORIGINAL_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eqt_original.h5"]  # no temporary file left
    # a verified cached copy is used without any network
    assert registry.pull("original", cache=tmp_path, url=_closed_port_url()) == path


def test_pull_refuses_a_tampered_download_and_leaves_nothing(served, tmp_path):
    with pytest.raises(WeightsError) as error:
        registry.pull("original", cache=tmp_path, url=f"{served['url']}/tampered.h5")
    message = str(error.value)
    assert "\n" not in message
    assert f"expected {ORIGINAL_SHA256}, found {served['tampered_sha256']}" in message
    assert list(tmp_path.iterdir()) == []


def test_pull_replaces_a_tampered_cached_copy(served, tmp_path):
    shutil.copy(served["root"] / "tampered.h5", tmp_path / "eqt_original.h5")
    path = registry.pull("original", cache=tmp_path, url=f"{served['url']}/EqT_original_model.h5")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ORIGINAL_SHA256


def test_pull_reports_unreachable_and_missing_urls(served, tmp_path):
    with pytest.raises(WeightsError, match="cannot download 'original' weights: http://127.0.0.1:"):
        registry.pull("original", cache=tmp_path, url=_closed_port_url())
    with pytest.raises(WeightsError, match="nothing.h5: HTTP 404"):
        registry.pull("original", cache=tmp_path, url=f"{served['url']}/nothing.h5")


def test_a_failed_pull_names_the_offline_routes_and_a_verified_copy(served, tmp_path, monkeypatch):
    monkeypatch.setenv("EQT_MONITOR_WEIGHTS", str(served["root"]))  # holds EqT_original_model.h5
    with pytest.raises(WeightsError) as failed:
        registry.pull("original", cache=tmp_path / "empty", url=_closed_port_url())
    message = str(failed.value)
    assert "\n" not in message and "--weights PATH" in message and "EQT_MONITOR_WEIGHTS" in message
    assert f"a verified copy is already at {served['root'] / 'EqT_original_model.h5'}" in message


def test_cli_pull_uses_the_cache_variable_and_refuses_tampered(served, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EQT_MONITOR_CACHE", str(tmp_path / "cache"))
    assert cli.main(["models", "pull", "original", "--url", f"{served['url']}/tampered.h5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"expected {ORIGINAL_SHA256}, found {served['tampered_sha256']}" in err
    assert cli.main(["models", "pull", "original", "--url", f"{served['url']}/EqT_original_model.h5"]) == 0
    assert (tmp_path / "cache" / "eqt_original.h5").is_file()
    assert "sha256 verified" in capsys.readouterr().out


def test_cli_pull_installs_a_local_file_offline(served, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["models", "pull", "original", "--cache", str(cache), "--weights"]
    assert cli.main([*args, str(served["root"] / "tampered.h5")]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert cli.main([*args, str(served["root"] / "EqT_original_model.h5")]) == 0
    assert hashlib.sha256((cache / "eqt_original.h5").read_bytes()).hexdigest() == ORIGINAL_SHA256


def test_registry_lists_both_published_sets_with_upstream_urls():
    sets = registry.registry()
    assert sets["original"].sha256 == ORIGINAL_SHA256
    assert sets["conservative"].sha256 == "0a9179fd40f9cda4fbc5372dd5f660bc35e69620d91dd7bdffe7f65baf7bd99b"
    assert sets["original"].urls[0].endswith("ModelsAndSampleData/EqT_original_model.h5")
    assert sets["conservative"].urls[0].endswith("ModelsAndSampleData/EqT_model_conservative.h5")
    assert "EqT_model2.h5" in sets["original"].file_names and "EqT_model.h5" in sets["conservative"].file_names


def test_cli_models_list_shows_the_zoo(monkeypatch, tmp_path, capsys, shared):
    monkeypatch.setenv("EQT_MONITOR_CACHE", str(tmp_path))
    monkeypatch.setenv("EQT_SHARED", str(shared))
    monkeypatch.delenv("EQT_MONITOR_WEIGHTS", raising=False)
    assert cli.main(["models", "list"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 1 + 15
    by_name = {row.split()[0]: row for row in rows[1:]}
    assert "373,495" in by_name["original"] and "378,311" in by_name["conservative"]
    assert str(shared / "models" / "eqt_original.h5") in by_name["original"]
    assert "none (train it first)" in by_name["genesis"]
