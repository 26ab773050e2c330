# A batch job: runs once to completion, writes its result into the data directory and
# is not restarted after a clean exit.
id              = "batch-job"
version         = "1"
name            = "Batch job"
description     = "Counts to COUNT, writes result.txt into the data directory and exits 0."
images = {
  busybox = "encedeus/busybox:latest"
}
startup        = "i=0; while [ $i -lt {{COUNT}} ]; do i=$((i + 1)); echo \"step $i\"; done; echo \"counted to $i\" > result.txt; echo done"
restart_policy = "on-failure"
disk           = "64Mi"

variable "COUNT" {
  name        = "Count"
  description = "How far to count."
  default     = "10"
  rules {
    kind     = "integer"
    required = true
    min      = 1
    max      = 100000
  }
}
