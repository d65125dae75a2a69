"""Persona files and persona agents."""
