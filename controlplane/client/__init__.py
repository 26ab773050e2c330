"""The `encedeus` command line client: REST API calls with tables and progress."""
