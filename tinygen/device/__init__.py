"""Talking to boards: serial protocol client, flashing and emulators."""
