"""Throughput benchmarks that write JSON: the data pipeline (`data`) and the training step (`train`)."""
