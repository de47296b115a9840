"""SeqIO task registrations, installed as `llmrec_jax.tasks`.

Modules here only call `seqio.TaskRegistry.add` / `seqio.MixtureRegistry.add` (the builders live in
`llmrec_jax.data.task_builders`); importing one registers its tasks:
  import llmrec_jax.tasks.synthetic   # llmrec_synthetic[_unseen|_id], llmrec_synthetic_b[...], llmrec_synthetic_mix
  llmrec_jax.tasks.foundation          # register(...): one Task per dataset of a mixture + the Mixture
Real datasets are never registered on import: entry points call
`task_builders.register_data_dir_tasks(name, data_dir, vocab, templates)`.
"""
