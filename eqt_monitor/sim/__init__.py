"""Test and demo servers: a SeedLink server that replays an archive (``eqt-monitor simulate``).

``archive`` (what an archive holds, its data as 512-byte records in release order) →
``server`` (the simulated clock, the released-record log, sockets) → ``session`` (one client:
commands, streaming) using ``protocol`` (selectors, SeedLink times, INFO documents).
Nothing in the product imports this package.
"""
