"""BLAST+ on this machine: running its programs, a search and its formats, the database
catalog, staging, building databases, the BLAST+ release."""
