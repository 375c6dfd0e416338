"""Cosmic keyword notes <-> the agreement, driven by the YAML files in mappings/."""
