"""Model specs (one YAML per variant) and the published-weights registry; installed as ``eqt_monitor.zoo``."""
