"""Model-agnostic pieces of the training loops (stopping on signals, checkpoint cadence)."""
