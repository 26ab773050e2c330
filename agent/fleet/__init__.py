"""The servers on this node: specs, their containers, lifecycle, console and stats."""
