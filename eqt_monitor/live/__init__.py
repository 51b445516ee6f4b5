"""The live service: the daemon, its live sources' ingest, station health, progress, metrics, systemd."""
