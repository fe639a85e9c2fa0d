"""The CPU side of the data path: catalogs, decoding, crops, FAME, Ray Data pipelines."""
