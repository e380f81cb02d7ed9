"""Reporting: the suite's tables (`dfg aggregate`), figures (`dfg figures`) and the paper's reported numbers.

Everything here reads only finished run outputs (metrics.json, curves.csv, artefacts.pt under
results/<suite>/runs/...), so it can be rerun at any time without touching a model.
"""
