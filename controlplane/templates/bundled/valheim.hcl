# Converted by `encedeus templates import` from a Pelican Valheim egg (PLCN_v3).
# It needs its images from a registry. Not converted:
#   - startup_commands: only the first (Default) is used; not converted: Crossplay
#   - features steam_disk_space are panel UI features and are not converted
id = "valheim"
version = "2025-03-18T12:36:54+00:00"
name = "Valheim"
description = "Valheim is a brutal exploration and survival game for 1-10 players."
images = { "ghcr.io/parkervcp/steamcmd:debian" = "ghcr.io/parkervcp/steamcmd:debian" }
startup = "./valheim_server.x86_64 -nographics -batchmode -name \"{{SERVER_NAME}}\" -port {{SERVER_PORT}} -world \"{{WORLD}}\" -password \"{{PASSWORD}}\" -public {{PUBLIC_SERVER}}"
egg = true
data_path = "/home/container"
done = "Game server connected"

stop {
  command = ""
  signal = "SIGINT"
  timeout_seconds = 30
}

install {
  image = "ghcr.io/parkervcp/installers:debian"
  entrypoint = "bash"
  script = "#!/bin/bash\ncd /tmp\nmkdir -p /mnt/server/steamcmd\n./steamcmd/steamcmd.sh +force_install_dir /mnt/server +login anonymous +app_update $${SRCDS_APPID} validate +quit"
  network = true
}

variable "SERVER_NAME" {
  name = "Server Name"
  description = "The name shown in the server browser."
  default = "My Valheim Server"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = true
    max = 64
  }
}

variable "PASSWORD" {
  name = "Password"
  description = "At least 5 characters, and not part of the server name."
  default = "changeme"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = true
    min = 5
  }
}

variable "WORLD" {
  name = "World"
  description = "The world file name."
  default = "Dedicated"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = true
    max = 32
    regex = "^[A-Za-z0-9_-]*$"
  }
}

variable "PUBLIC_SERVER" {
  name = "Public server"
  description = "1 lists the server in the browser."
  default = "1"
  user_viewable = true
  user_editable = true
  rules {
    kind = "boolean"
    required = true
  }
}

variable "SRCDS_APPID" {
  name = "App ID"
  description = ""
  default = "896660"
  user_viewable = false
  user_editable = false
  rules {
    kind = "string"
    required = true
    one_of = ["896660"]
  }
}

variable "MAX_PLAYERS" {
  name = "Max players"
  description = ""
  default = "10"
  user_viewable = true
  user_editable = true
  rules {
    kind = "integer"
    required = true
    min = 1
    max = 64
  }
}

port "default" {
  protocols = ["tcp", "udp"]
}
