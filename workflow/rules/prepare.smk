rule prepare:
    input:
        unpack(prepare_inputs),
    output:
        prepared=directory(PLAN.prepared_dir("{dataset}")),
    log:
        log_path("prepare", "{dataset}"),
    params:
        cmd=prepare_cmd,
        values=prepare_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=prepare_mem_mb,
        runtime=60,
    shell:
        "{params.cmd} > {log} 2>&1"
