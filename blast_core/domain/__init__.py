"""The domain: jobs, requests, FASTA, batches, queue messages, the platform's limits and how
a search is sized. Pure logic, no I/O; imports nothing else of blast_core."""
