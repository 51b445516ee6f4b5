"""Replay on a Dask cluster: (station group, time chunk) tasks run the serial replay on workers
(``tasks``); the client plans, skips finished chunks, gathers and writes (``client``)."""
