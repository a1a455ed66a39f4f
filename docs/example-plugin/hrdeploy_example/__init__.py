"""Example hrdeploy plugin: see docs/writing-plugins.md."""
