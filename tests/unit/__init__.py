"""Unit tests of the service's logic on in-memory fakes (fakes.py): no Azurite, no Service
Bus, no BLAST+, no network; the whole directory runs in seconds."""
