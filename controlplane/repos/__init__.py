"""Seed 003's watch list: forge repositories, their releases and release assets."""
