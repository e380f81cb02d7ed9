rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=PLAN.source_model("{source}"),
    log:
        log_path("pretrain", "{source}"),
    benchmark:
        benchmark_path("pretrain", "{source}")
    wildcard_constraints:
        source=pretrained_sources(),
    params:
        cmd=pretrain_cmd,
        values=pretrain_values,
    conda:
        CONDA_ENV
    threads: pretrain_threads
    resources:
        **GPU_RESOURCES,
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    shell:
        "dfg gpu-lease -- {params.cmd} > {log} 2>&1"
