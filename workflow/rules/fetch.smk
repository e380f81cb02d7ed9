# Downloads run on the submit host (localrule): cluster compute nodes often have no internet.


localrules:
    fetch,
    fetch_weights,


rule fetch:
    output:
        raw=directory(PLAN.raw_dir("{dataset}")),
    log:
        log_path("fetch", "{dataset}"),
    params:
        cmd=fetch_cmd,
        values=fetch_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "{params.cmd} > {log} 2>&1"


rule fetch_weights:
    output:
        raw=directory(PLAN.weights_raw_dir("{source}")),
        model=PLAN.source_model("{source}"),
    log:
        log_path("fetch_weights", "{source}"),
    wildcard_constraints:
        source=weight_sources(),
    params:
        cmd=fetch_weights_cmd,
        values=fetch_weights_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "{params.cmd} > {log} 2>&1"
