"""Model updates without reflashing: signed slot images, the device's slot
commands, delta transfers and the power-loss campaign (docs/model-update.md)."""
