"""The use cases: submitting, reading and cancelling jobs, processing queue messages, results,
and the operator's work (stats, clean-up, sweep, dead letters)."""
