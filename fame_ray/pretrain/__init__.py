"""Pretraining on Ray Train: the driver (`driver`), the run plan it derives (`plan`), the worker
loop (`worker`), one training step (`step`) with its on-device augmentation (`augment`), the
learning-rate schedule (`schedule`), progress lines (`progress`) and per-step metrics (`metrics`)."""
