"""Model specs (one YAML per variant) and the published-weights registry (package data of ``eqt_monitor.zoo``)."""
