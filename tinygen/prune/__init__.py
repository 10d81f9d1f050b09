"""Pruning that pays on the device: structured channel removal on the int8
model (channels.py), the sparsity facts every stage asks about (sparsity.py)
and magnitude pruning with fine-tuning of a Keras model (train.py)."""
