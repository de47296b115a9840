"""Offline default tasks on the synthetic data (registered on import; cheap, no files needed).

Tasks `llmrec_synthetic` (+ `_unseen`, `_id`) on `make_synthetic(seed=0)`, `llmrec_synthetic_b`
(+ `_unseen`, `_id`) on `make_synthetic(seed=1)`, and the Mixture `llmrec_synthetic_mix` of the two
rec tasks (the foundation setting in miniature), plus the whole-prompt tasks `<name>_rec_tokens` and
`<name>_id_tokens` of both (`prompt_token_tasks`: IDGenRec's training prompts, with soft slots).
All use a vocabulary trained on their own text and the `llmrec_default` templates. `PROVIDERS[name]`
holds the ID tables the tasks read: replace them with `PROVIDERS[name].set(item=..., user=...)`
between ID phases. The rec, unseen and id tasks have `item_catalogues` entries (their items).
Real datasets are registered by the entry points with `task_builders.register_data_dir_tasks`.
"""
import seqio

from llmrec_jax.data import item_catalogues, prompt_token_tasks
from llmrec_jax.data import task_builders as tb
from llmrec_jax.data import vocab as vocab_lib
from llmrec_jax.data.prompts import get_template_set
from llmrec_jax.data.synthetic import make_synthetic

TEMPLATES = get_template_set("llmrec_default")
DATA = {"llmrec_synthetic": make_synthetic(seed=0), "llmrec_synthetic_b": make_synthetic(seed=1)}
PROVIDERS = {name: tb.IdProvider(*tb.title_id_tables(data)) for name, data in DATA.items()}
VOCAB = vocab_lib.get_vocabulary(
    data=DATA["llmrec_synthetic"],
    id_tables=[t for p in PROVIDERS.values() for t in (p.item, p.user)],
    extra_texts=[t.input for t in TEMPLATES.train + TEMPLATES.unseen]
    + vocab_lib.dataset_texts(DATA["llmrec_synthetic_b"]), vocab_size=2000)

for _name, _data in DATA.items():
  for _kind in tb.TaskKind:
    _spec = tb.TaskSpec(templates=TEMPLATES, kind=_kind, sample_num=3, max_his=20, seed=0)
    _examples = tb.RecExamples(_data, PROVIDERS[_name], _spec)
    _task = _name if _kind == tb.TaskKind.REC else f"{_name}_{_kind.value}"
    seqio.TaskRegistry.add(**tb.task_kwargs(_task, _examples, VOCAB))
    item_catalogues.register(_task, tb.item_catalogue(_examples))  # what full-ranking evaluation reads
  prompt_token_tasks.register_prompt_token_tasks(_name, _data, VOCAB, PROVIDERS[_name], TEMPLATES,
                                                 grow_lengths=True)

seqio.MixtureRegistry.add("llmrec_synthetic_mix", [("llmrec_synthetic", 1.0), ("llmrec_synthetic_b", 1.0)])
