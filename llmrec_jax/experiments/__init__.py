"""Experiment drivers: collect (and run) baselines and generative runs into a results table.

`published.py` reads the published numbers quoted in ../shared/data/README.md, `runs.py` knows
the runs-directory layout and the command of every (dataset, model), `table.py` is the CLI.
"""
