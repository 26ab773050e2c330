"""The public REST API: route table, endpoint layer, one module per resource."""
