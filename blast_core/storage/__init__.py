"""Azure Storage and Service Bus, behind the small interfaces the service layer uses: job
records, blobs, queues. The Azure SDK appears here (and in telemetry) only."""
