"""Build stage: PlatformIO projects for real and emulated boards."""
