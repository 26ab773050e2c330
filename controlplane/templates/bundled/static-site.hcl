# A static web site served by busybox httpd from the data directory's public/ folder.
id          = "static-site"
version     = "1"
name        = "Static web site"
description = "Serves the files under public/ (upload them over SFTP) with busybox httpd."
images = {
  busybox = "encedeus/busybox:latest"
}
startup = "exec httpd -f -v -p 8080 -h /data/public"
disk    = "256Mi"

port "http" {
  protocols      = ["tcp"]
  container_port = 8080
}

variable "SITE_TITLE" {
  name        = "Site title"
  description = "The title of the placeholder page written at install."
  default     = "It works"
  rules {
    kind = "string"
    max  = 80
  }
}

install {
  image      = "encedeus/busybox:latest"
  entrypoint = "sh"
  script     = <<-EOT
    set -e
    mkdir -p /mnt/server/public
    if [ ! -f /mnt/server/public/index.html ]; then
      printf '<!doctype html><title>%s</title><h1>%s</h1>\n' "$SITE_TITLE" "$SITE_TITLE" \
        > /mnt/server/public/index.html
    fi
  EOT
}
