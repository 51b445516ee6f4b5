"""Services over the catalog: the FDSN event web service (``eqt-monitor serve``, or mounted by the daemon)."""
