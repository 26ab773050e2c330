"""Resource use of containers (cgroup files, /proc) and of the host (psutil)."""
