"""Targets that ship with the hrdeploy distribution (registered through entry points like any other)."""
