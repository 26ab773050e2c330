"""Skyhook's SFTP server: every server directory, confined, behind control plane logins."""

from agent.sftp.service import SFTPService

__all__ = ["SFTPService"]
