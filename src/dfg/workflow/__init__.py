"""The pipeline around the `dfg` verbs: the job plan shared by Snakemake and DVC (`plan`), the DVC
stage generator (`dfg dvc-yaml`), GPU leasing for parallel jobs on one box (`dfg gpu-lease`) and the
resolved-parameter printer (`dfg params`)."""
