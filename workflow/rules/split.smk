rule split:
    input:
        unpack(split_inputs),
    output:
        split=PLAN.split_file("{task}", "{seed}"),
    log:
        log_path("split", "{task}", "seed{seed}"),
    params:
        cmd=split_cmd,
        values=split_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{params.cmd} > {log} 2>&1"
