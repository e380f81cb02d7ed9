"""Datasets: the registry (`dfg.data.registry.DATASETS`), fetching, preparing and reading prepared data.

`dfg fetch` -> data/raw/<dataset>/ (official files + fetched.json), `dfg prepare` ->
data/prepared/<dataset>/ (docs/architecture.md), `dfg split` -> data/splits/<task>/seed<k>.json.
"""
