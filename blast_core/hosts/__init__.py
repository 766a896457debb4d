"""What runs the service: the Azure Functions host's adapters, `serve`, and the queue worker."""
