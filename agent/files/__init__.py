"""A server's files: the one confinement module (`confine`) that SFTP and the HTTP file
API both resolve paths with, and the HTTP file API itself."""
