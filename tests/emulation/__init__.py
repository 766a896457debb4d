"""Emulations of what cannot run on this machine: Azure Service Bus (its emulator needs Docker)
and the Azure Functions host (Core Tools cannot be installed). Each keeps to the documented
contract at the narrowest boundary; docs/reliability.md traces every rule to its source."""
