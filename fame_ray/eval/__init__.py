"""Downstream evaluation: clip/video accuracy, retrieval recall, results tables.

Pure functions over arrays live in `metrics` and `retrieval`; `report` writes and reads
the results table of a run; `features` extracts clip features with Ray Data.
"""
