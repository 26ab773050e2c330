"""`encedeus up`: the whole system on one machine (control plane + local agent)."""
