"""Downstream evaluation on Ray: finetunes and linear probes as Ray Tune sweeps of Ray Train
runs (`finetune`, `sweep`, `search_space`), retrieval features (`features`), and the checks a
downstream run makes before it launches anything (`preflight`)."""
