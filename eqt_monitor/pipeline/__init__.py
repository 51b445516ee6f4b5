"""From raw samples to picks: station buffers, resampling, windows, the batched model, stacking, the picker."""
