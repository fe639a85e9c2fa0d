"""Method comparisons run through the product's own pipeline (Ray Data, Ray Train, probes)."""
