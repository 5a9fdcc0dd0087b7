"""The dashboard's pages, a module per area; each stays thin over the policy module it shows."""
