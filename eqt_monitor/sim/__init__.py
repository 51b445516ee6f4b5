"""Test and demo servers: a SeedLink server that replays an archive (``eqt-monitor simulate``)."""
