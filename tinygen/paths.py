"""Where tinygen's data folders live (next to the package in a source checkout)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
TEMPLATES_DIR = ROOT / "firmware_templates"
BOARDS_DIR = ROOT / "boards"
