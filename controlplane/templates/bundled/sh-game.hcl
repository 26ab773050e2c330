# A "game server" written in sh: it shows what a template does without a registry.
# The install script writes the server into the data directory; the server prints a
# done line, answers console commands, `save` writes its state, `stop` saves and exits.
id          = "sh-game"
version     = "1"
name        = "Shell game server"
description = "A tiny console game server in POSIX sh: counts, saves and stops cleanly."
images = {
  busybox = "encedeus/busybox:latest"
}
startup = "exec sh ./server.sh \"{{WORLD_NAME}}\" {{MAX_PLAYERS}}"
done    = "is ready for players"
disk    = "64Mi"

stop {
  command         = "stop"
  timeout_seconds = 10
}

backup {
  before = ["save"]
}

port "game" {
  protocols = ["tcp"]
}

variable "WORLD_NAME" {
  name        = "World name"
  description = "Shown when the server starts and saved with the state."
  default     = "overworld"
  rules {
    kind     = "string"
    required = true
    max      = 32
    regex    = "^[A-Za-z0-9 _-]+$"
  }
}

variable "MAX_PLAYERS" {
  name        = "Maximum players"
  description = "How many players may join."
  default     = "8"
  rules {
    kind     = "integer"
    required = true
    min      = 1
    max      = 64
  }
}

variable "DIFFICULTY" {
  name        = "Difficulty"
  description = "Written into game.properties before each start."
  default     = "normal"
  rules {
    kind   = "string"
    one_of = ["peaceful", "easy", "normal", "hard"]
  }
}

config_file "game.properties" {
  parser = "properties"
  set = {
    "difficulty" = "{{env.DIFFICULTY}}"
    "port"       = "{{server.port}}"
  }
}

install {
  image      = "encedeus/busybox:latest"
  entrypoint = "sh"
  script     = <<-EOT
    set -e
    cd /mnt/server
    cat > server.sh <<'SERVER'
    #!/bin/sh
    # Usage: server.sh WORLD MAX_PLAYERS. State lives in state.txt beside it.
    world="$1"
    count=0
    [ -f state.txt ] && count=$(cat state.txt)
    echo "Loading world $world (max $2 players, $(grep '^difficulty=' game.properties 2>/dev/null))"
    echo "World $world is ready for players (count=$count)"
    while read -r line; do
      case "$line" in
        add) count=$((count + 1)); echo "count=$count" ;;
        "say "*) echo "[Server] $${line#say }" ;;
        save) echo "$count" > state.txt; echo "Saved count=$count" ;;
        stop) echo "$count" > state.txt; echo "Saved count=$count, stopping"; exit 0 ;;
        *) echo "Unknown command: $line" ;;
      esac
    done
    SERVER
    chmod 0755 server.sh
    echo "difficulty=normal" > game.properties
    echo "installed server.sh"
  EOT
}
