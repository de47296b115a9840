"""SeqIO task registrations, installed as `llmrec_jax.tasks`."""
