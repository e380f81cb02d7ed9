# DFG pipeline: data -> splits -> source models -> runs -> tables and figures, one `dfg` verb per rule.
# Suite: params.yaml is `demo`; `--config suite=paper` (or `--configfile workflow/suites/paper.yaml`)
# selects another. All logic lives in workflow/rules/common.smk.
from snakemake.utils import min_version

# 9.19: the workflow profile profiles/default/profile.yaml is read under that name.
min_version("9.19")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
