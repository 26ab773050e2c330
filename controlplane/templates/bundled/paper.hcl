# Converted by `encedeus templates import` from Pterodactyl's Paper egg (PTDL_v2).
# It needs its images from a registry. Not converted:
#   - features eula, java_version, pid_limit are panel UI features and are not converted
id = "paper"
version = "2024-06-02T20:42:02+00:00"
name = "Paper"
description = "High performance Spigot fork that aims to fix gameplay and mechanics inconsistencies."
images = { "Java 21" = "ghcr.io/pterodactyl/yolks:java_21", "Java 17" = "ghcr.io/pterodactyl/yolks:java_17", "Java 11" = "ghcr.io/pterodactyl/yolks:java_11" }
startup = "java -Xms128M -XX:MaxRAMPercentage=95.0 -Dterminal.jline=false -Dterminal.ansi=true -jar {{SERVER_JARFILE}}"
egg = true
data_path = "/home/container"
done = ")! For help, type "

stop {
  command = "stop"
  signal = ""
  timeout_seconds = 30
}

backup {
  before         = ["save-off", "save-all flush"]
  after          = ["save-on"]
  settle_seconds = 2
}

install {
  image = "ghcr.io/pterodactyl/installers:alpine"
  entrypoint = "ash"
  script = "#!/bin/ash\n# Paper Installation Script\n#\n# Server Files: /mnt/server\nPROJECT=paper\n\nif [ -n \"$${DL_PATH}\" ]; then\n\techo -e \"Using supplied download url: $${DL_PATH}\"\n\tDOWNLOAD_URL=`eval echo $(echo $${DL_PATH} | sed -e 's/{{/$${/g' -e 's/}}/}/g')`\nelse\n\tVER_EXISTS=`curl -s https://api.papermc.io/v2/projects/$${PROJECT} | jq -r --arg VERSION $MINECRAFT_VERSION '.versions[] | contains($VERSION)' | grep -m1 true`\nfi\n\ncd /mnt/server\n\necho -e \"Downloading $${DOWNLOAD_URL}\"\ncurl -o $${SERVER_JARFILE} $${DOWNLOAD_URL}\n\nif [ ! -f server.properties ]; then\n    echo -e \"Downloading MC server.properties\"\n    curl -o server.properties https://raw.githubusercontent.com/parkervcp/eggs/master/minecraft/java/server.properties\nfi"
  network = true
}

variable "MINECRAFT_VERSION" {
  name = "Minecraft Version"
  description = "The version of minecraft to download. \r\n\r\nLeave at latest to always get the latest version."
  default = "latest"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = false
    max = 20
  }
}

variable "SERVER_JARFILE" {
  name = "Server Jar File"
  description = "The name of the server jarfile to run the server with."
  default = "server.jar"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = true
    regex = "^([\\w\\d._-]+)(\\.jar)$"
  }
}

variable "DL_PATH" {
  name = "Download Path"
  description = "A URL to use to download a server.jar rather than the ones in the install script. This is not user viewable."
  default = ""
  user_viewable = false
  user_editable = false
  rules {
    kind = "string"
    required = false
  }
}

variable "BUILD_NUMBER" {
  name = "Build Number"
  description = "The build number for the paper release.\r\n\r\nLeave at latest to always get the latest version."
  default = "latest"
  user_viewable = true
  user_editable = true
  rules {
    kind = "string"
    required = true
    max = 20
  }
}

config_file "server.properties" {
  parser = "properties"
  set = { "server-ip" = "0.0.0.0", "server-port" = "{{server.port}}", "query.port" = "{{server.port}}" }
}

port "default" {
  protocols = ["tcp", "udp"]
}
