"""Training on Ray Train: pretraining (MoCo + FAME), checkpoints, metrics, runs."""
