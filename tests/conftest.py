"""Fixtures every part of the suite shares."""

from __future__ import annotations

import os

TEST_IMAGE = os.environ.get("ENCEDEUS_TEST_IMAGE", "encedeus/busybox:latest")
