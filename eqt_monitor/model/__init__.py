"""EQTransformer and its variants in Keras 3 (backend-agnostic), with the published weights.

Import the submodules directly (``eqt_monitor.model.load``, ``.eqt``, ``.spec``, ...):
this package imports nothing itself, so ``backend.configure`` can run before Keras loads.
"""
