"""`fame-ray reproduce`: the paper's whole study as one resumable job (plan, record, progress,
references, report, run)."""
