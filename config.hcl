# Encedeus configuration: one file, two blocks. `skyhook --config config.hcl` reads
# the agent block, `encedeus controlplane --config config.hcl` the controlplane block.
# Every key is optional; these are the defaults. Unknown keys are an error.

agent {
  # (filled in by the agent: data_dir, addresses and ports, control plane URL,
  #  join token, node secret file, port range, resource reservations)
}

controlplane {
  # (filled in by the control plane: listen address, port, data_dir, database_url,
  #  jwt secret, registration, smtp)
}
