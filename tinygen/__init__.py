"""tinygen: trained Keras models to verified microcontroller firmware."""

__version__ = "0.1.0"
