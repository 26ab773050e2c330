"""One-shot tasks (seed 003): input files, running on agents, persisted logs."""
