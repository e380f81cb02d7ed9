localrules:
    aggregate,


rule aggregate:
    input:
        metrics=aggregate_inputs,
    output:
        **PLAN.table_files(),
    log:
        log_path("aggregate", "aggregate"),
    params:
        cmd=aggregate_cmd,
        values=aggregate_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "{params.cmd} > {log} 2>&1"
