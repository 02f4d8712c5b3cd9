"""The load benchmark of the failed-integrations API (see bench/README.md)."""
