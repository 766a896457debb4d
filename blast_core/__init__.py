"""The shared core of the BLAST search service: used by the Azure Functions app and by
`python -m blast_core serve`."""
