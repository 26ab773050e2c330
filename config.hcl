# Encedeus configuration: one file, two blocks. `skyhook --config config.hcl` reads
# the agent block, `encedeus controlplane --config config.hcl` the controlplane block.
# Every key is optional; these are the defaults. Unknown keys are an error.

agent {
  # Where Skyhook keeps its state: volumes/<server id> (each server's data, mounted
  # at /data and served over SFTP), node.json (identity after enrolment) and
  # ownership/ (markers of re-owned data directories). Made 0700 at start (0711
  # under userns-remap); each volumes/<server id> is a nosuid,nodev bind mount of
  # itself, so Skyhook must run as root in the host's mount namespace.
  data_dir = "/var/lib/skyhook"

  # Enrolment: with no node secret yet, the agent enrols at the control plane with
  # this one-time join token and stores its node id and secret in node_secret_file
  # (default <data_dir>/node.json, mode 0600); restarts reuse it.
  controlplane_url = ""
  join_token       = ""
  node_secret_file = ""
  # The address other machines reach this host by, sent at enrolment. Empty: the
  # listen host, or 127.0.0.1 when listening on a wildcard (all on one machine).
  # Set it on every agent of a multi-host fleet.
  advertise_host = ""
  # For development and tests only: a fixed identity instead of enrolment.
  # node_id     = "local"
  # node_secret = "..."

  # gRPC for the control plane (node secret in metadata; TLS when tls is set).
  grpc {
    host = "0.0.0.0"
    port = 50051
  }
  # Browser console and exec WebSockets, the file API and GET /health. With
  # cert_file and key_file (PEM) it serves https and wss, which a panel served over
  # HTTPS needs (browsers block ws:// and http:// calls from https:// pages).
  # public_url: how browsers reach this port (e.g. "https://node-a.example.net:8081",
  # or a reverse proxy's URL); empty: https or http, advertise_host (for a wildcard
  # host without it, this host's primary address) and the port.
  http {
    host       = "0.0.0.0"
    port       = 8081
    cert_file  = ""
    key_file   = ""
    public_url = ""
  }
  # SFTP to each server's data directory.
  sftp {
    host = "0.0.0.0"
    port = 2022
  }
  tls {
    cert_file      = ""  # PEM; set both to serve gRPC over TLS (the http block has its own)
    key_file       = ""
    client_ca_file = ""  # PEM CA: also require client certificates it signed (mutual TLS)
  }

  # Host ports containers may be published on (inclusive); a port binding with
  # host_port 0 gets a free one from this range.
  port_range {
    start = 25565
    end   = 25665
  }
  # Kept back for the host, not offered to the scheduler.
  reserved {
    cpu_millis = 0
    memory_mb  = 0
    disk_mb    = 0  # of the data_dir filesystem: not offered to volumes' disk limits
  }

  console {
    history_lines                      = 1000  # kept per server, sent to new viewers
    ws_allowed_origins                 = []    # e.g. ["https://panel.example.com"]; empty: any
    ws_max_sockets_per_server          = 30    # authenticated sockets per server
    ws_max_unauthenticated_per_address = 4     # not yet authenticated, per client address
    ws_max_message_bytes               = 4096
    ws_max_messages_per_second         = 10
    ws_auth_timeout_seconds            = 10    # sockets this long without a valid token are closed
  }

  # The Docker network servers with networking join. Missing, it is created as a
  # bridge without traffic between its containers: a server reaches the host and
  # published ports, never another server's unpublished ones (RCON, databases).
  # "bridge" is Docker's default bridge, where every container reaches every other.
  network = "encedeus"

  # The uid:gid every server runs as inside its container, and the owner of its data
  # directory (volumes/<id>, re-owned once when it changes). A deployment with
  # run_as_root = true runs as 0:0 instead, still without any capability. Docker's
  # userns-remap (per daemon) is detected: files then belong to the remapped host ids.
  # Neither may be 0. See docs/security.md.
  container_user = "988:988"

  labels                      = {}    # extra labels on every container of this node
  default_pids_limit          = 512   # when a server asks for none
  log_max_size                = "10m" # json-file log per container file...
  log_max_files               = 3     # ...and how many files
  disk_usage_interval_seconds = 30    # data directory sizes are recomputed this often
  docker_threads              = 16    # worker threads for Docker API calls
  # A pull that received no bytes for this long is abandoned: registry_unreachable.
  pull_stall_seconds          = 60

  # Image names (tags, digests) that servers of this node pulled and no server has
  # used for unused_seconds are removed (0: never). Images any container uses, and
  # names matching `protected`, always stay.
  image_gc {
    unused_seconds   = 86400
    interval_seconds = 600
    protected        = []   # e.g. ["encedeus/busybox:latest"]
  }

  # The host address container ports are published on (e.g. a private interface, so
  # that web apps are reachable only through the ingress); "" = every address.
  publish_address = ""

  # The ingress role (docs/ingress.md): this agent runs Caddy as a child process and
  # serves the routing table the control plane sends. Its admin API is a unix socket
  # (default <data_dir>/ingress/admin.sock); storage_dir holds only TLS state
  # (default <data_dir>/ingress/tls) and may be shared by every ingress host.
  ingress {
    enabled      = false
    caddy_binary = "caddy"
    listen_host  = ""      # "" = every address
    http_port    = 80
    https_port   = 443
    admin_socket = ""
    storage_dir  = ""
    # This node's own replicas are dialled at their container's address on the
    # bridge, not through Docker's port proxy (docs/ingress.md).
    dial_containers = true
  }

  # Backups of servers' volumes with restic (docs/stateful.md). Empty repository: a
  # repository of this node's own at <data_dir>/backups, its password made by the
  # agent (<data_dir>/backups.key). Or one restic repository for the whole fleet
  # (then a move after node loss can restore the latest backup on another node):
  backups {
    restic_binary = "restic"
    repository    = ""   # e.g. "sftp:backup@10.0.0.5:/srv/restic", "s3:s3.example.net/bucket"
    password      = ""   # or password_file; passed to restic through its environment
    password_file = ""
    env           = {}   # e.g. { AWS_ACCESS_KEY_ID = "...", AWS_SECRET_ACCESS_KEY = "..." }
    options       = {}   # restic -o options, e.g. { "sftp.command" = "ssh -i /etc/skyhook/backup_key backup@10.0.0.5 -s sftp" }
  }

  watchdog                    = true  # WATCHDOG=1 to systemd when WatchdogSec is set
  log_level                   = "info"
}

controlplane {
  # HTTP: REST API, WebSockets, /health, /metrics. PORT overrides port.
  listen_address = "0.0.0.0"
  port           = 3000

  # State: the embedded SQLite database (encedeus.db) and the generated jwt_secret.
  data_dir = "/var/lib/encedeus"
  # Empty: SQLite in data_dir (WAL). PostgreSQL: "postgresql://user:pw@host/db"
  # (postgres:// and postgresql+asyncpg:// too; libpq's ?sslmode= is passed on as ssl).
  # DATABASE_URL overrides. The schema is migrated at start; a database migrated by a
  # newer release is refused.
  database_url = ""

  # Signs access tokens and keys the stored hashes of API keys and refresh tokens.
  # Empty: generated once into <data_dir>/jwt_secret. JWT_SECRET overrides. Changing
  # it signs everyone out and voids every API key.
  jwt_secret = ""

  # Encrypts secrets at rest (forge tokens of /v1/repos, registry credentials) with
  # AES-256-GCM: 32 bytes in urlsafe base64 (python3 -c "import base64, os;
  # print(base64.urlsafe_b64encode(os.urandom(32)).decode())"). Empty: generated once
  # into <data_dir>/secrets_key. ENCEDEUS_SECRETS_KEY overrides. Every control plane
  # on one database needs the same key; losing it loses the stored secrets.
  secrets_key = ""

  # "open": anyone may register (the first account becomes admin). "closed": only
  # `encedeus user create` makes accounts.
  registration = "open"

  access_token_ttl_seconds   = 900   # JWT access tokens
  refresh_token_ttl_days     = 30    # a session unused this long ends
  password_reset_ttl_minutes = 30    # lifetime of a mailed reset token
  # The web UI's address as people reach it; reset mails link to
  # <public_url>/reset-password#token=… (empty: the mail carries the token only).
  # public_url = "https://panel.example.com"
  max_request_bytes          = 1048576  # larger bodies get 413
  # Per client address and endpoint, on login, register, forgot- and reset-password.
  auth_rate_limit          = 10
  auth_rate_window_seconds = 60
  # Reverse proxies in front of the API, e.g. ["127.0.0.1", "10.0.0.0/8"]. Behind them
  # the client is the rightmost X-Forwarded-For address that is not a proxy (for the
  # limits above and the session list); from anyone else the header is ignored.
  trusted_proxies = []
  # API-key lookups, and the session check of an access token, are cached this long
  # per process. Revoking a key or a session, logging out and every change to an
  # account clear the entries at once in this process, and within a second in every
  # other control plane on the same PostgreSQL (NOTIFY). 0: a database read per request.
  api_key_cache_seconds = 30
  session_cache_seconds = 30

  # Outgoing mail. Empty smtp_host: mails are written to the log instead.
  # SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, EMAIL_FROM, EMAIL_FROM_NAME
  # override; seed 004's AWS_SES_SMTP_HOST, AWS_SES_SMTP_PORT, AWS_SES_USERNAME and
  # AWS_SES_PASSWORD are read as the SMTP_* settings (SES over SMTP).
  smtp_host     = ""
  smtp_port     = 587
  smtp_username = ""
  smtp_password = ""
  smtp_tls      = "auto"  # auto (STARTTLS when offered) | starttls | tls | none
  email_from    = "encedeus@localhost"
  email_from_name = ""  # display name: From: "Name <email_from>"

  # Webhooks for deployment and task events (WEBHOOK_URL overrides the URL).
  webhook_url          = ""
  webhook_secret       = ""  # HMAC-SHA256 key of X-Encedeus-Signature; empty: unsigned
  webhook_max_attempts = 6  # no longer used: webhook_dead_after_seconds replaced it
  # A delivery still failing this long after its first attempt is dead (the ones
  # behind it go ahead); retries back off 1 s, 2 s, 4 s, ... up to the max delay.
  webhook_dead_after_seconds      = 3600
  webhook_retry_max_delay_seconds = 60
  # How long the event log keeps events (resumable cursors, GET /v1/events).
  event_retention_seconds = 86400
  # Per-account webhooks (POST /v1/webhooks) may reach loopback/private addresses.
  webhook_allow_private = false
  # Mail the owner when one of their tasks ends or a deployment fails.
  email_notifications = false
  # The notifications WebSocket: open sockets per account, messages a second per
  # socket; past either the socket is closed with 4429.
  notification_sockets_per_account = 10
  notification_messages_per_second = 20

  # Task input files fetched from URLs: http(s) only, public addresses only unless
  # allowed here; each file at most task_fetch_max_bytes (a fetched file is held in
  # memory). All inputs of a task at most task_input_max_bytes (4 GiB): uploads are
  # streamed into the database in chunks, and the agent streams them from there.
  task_fetch_allow_private   = false
  task_fetch_max_bytes       = 3145728
  task_fetch_timeout_seconds = 30
  task_input_max_bytes       = 4294967296
  # Private networks that task URLs and per-account webhooks may reach anyway (an
  # internal mirror, say), e.g. ["10.1.2.0/24"]; see "Outbound requests" in
  # docs/architecture.md.
  outbound_allowed_networks = []

  # The releases API that /v1/repos watches: GitHub (default), GitHub Enterprise
  # ("https://HOST/api/v3") or Gitea/Forgejo ("https://HOST/api/v1"). Release assets
  # are downloaded with the task_fetch_* rules above.
  forge_api_url         = "https://api.github.com"
  forge_timeout_seconds = 15

  # Deployments get <name>.<domain_suffix> URLs when set (DOMAIN_SUFFIX overrides),
  # served by the ingress nodes (docs/ingress.md). ingress_tls: "acme" (automatic
  # HTTPS; on-demand certificates for custom domains, gated by /v1/ingress/ask at
  # ingress_ask_url, default this control plane on 127.0.0.1), "internal" (Caddy's own
  # CA) or "off" (plain HTTP). ingress_public_port: the port in URLs (0 = default).
  domain_suffix       = ""
  ingress_tls         = "acme"
  ingress_public_port = 0
  ingress_ask_url     = ""
  # Custom-domain checks: nameservers for the TXT lookup ("ip" or "ip:port"; [] = the
  # system's), and whether the HTTP-token fetch may reach private addresses.
  domain_nameservers         = []
  domain_check_allow_private = false

  # Orchestration. A node silent for node_grace_seconds is down and its replicas move;
  # agents send heartbeats every heartbeat_interval_ms; the reconciler also runs every
  # reconcile_interval_seconds (besides reacting at once to changes). A crashed replica
  # restarts after base * 2^(n-1) seconds, at most cap. agent_ca_file (PEM) turns on
  # TLS for the gRPC connections to agents; it is also trusted, besides the system's
  # CAs, for agents' HTTPS ports (file operations relayed to them).
  node_grace_seconds           = 20
  heartbeat_interval_ms        = 1000
  reconcile_interval_seconds   = 2
  # The data of a slot removed by scale-down is kept (and listed) this long.
  volume_grace_seconds         = 604800
  backup_schedule_interval_seconds = 30  # how often the leader starts scheduled backups that are due
  # How often the leader deletes due volumes (released past their grace, stale copies)
  # on every node that holds a copy.
  volume_sweep_interval_seconds = 300
  restart_backoff_base_seconds = 1
  restart_backoff_cap_seconds  = 60

  # Key of secrets at rest (registry credentials): a Fernet key (urlsafe base64, 32
  # bytes). Empty: generated once into <data_dir>/secrets_key. Control planes that
  # share a database must share it.
  secrets_key = ""
  # Images deployments may use (403 image_not_allowed otherwise): entries with a "/"
  # (or ending in ":") are prefixes of registry/repository, e.g. "docker.io/library/";
  # others name one registry, e.g. "ghcr.io". Empty: any image.
  image_allowlist = []
  # Registries at loopback, private, link-local (169.254.169.254) or other non-public
  # IP literals, and `localhost`, are refused (403 image_not_allowed) unless
  # image_allowlist names them (e.g. "127.0.0.1:5000") or this is true (a lab or a
  # local registry next to `encedeus up`).
  image_registries_allow_private = false

  agent_ca_file                = ""

  log_level                = "info"
  shutdown_timeout_seconds = 10

  # Quota of every new account (an admin changes it per account with
  # PUT /v1/users/{id}/quota). null = unlimited. Counted over every deployment's wanted
  # replicas, stopped ones included, plus the tasks that have not ended. CPU in
  # millicores (1000 = one core), memory and disk in bytes. Deployments have no disk
  # size yet, so disk_bytes is stored and shown but nothing uses disk so far.
  default_quota {
    deployments  = null
    replicas     = null
    cpu_millis   = null
    memory_bytes = null
    disk_bytes   = null
  }
}
