# One run = task x method x seed. A failed or killed run leaves its resume checkpoint
# (models/<suite>/runs/.../seed<k>.resume.pt, not a declared output, so Snakemake keeps it) and the
# rerun continues from there.


rule train:
    input:
        unpack(train_inputs),
    output:
        model=PLAN.run_model("{task}", "{method}", "{seed}"),
        metrics=run_file("metrics.json"),
        curves=run_file("curves.csv"),
    log:
        log_path("train", "{task}", "{method}", "seed{seed}"),
    benchmark:
        benchmark_path("train", "{task}", "{method}", "seed{seed}")
    params:
        cmd=train_cmd,
        values=train_values,
    conda:
        CONDA_ENV
    threads: train_threads
    resources:
        **GPU_RESOURCES,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    shell:
        "dfg gpu-lease -- {params.cmd} > {log} 2>&1"


# Methods with figures artefacts (dfg, difa_cmwgan) also declare artefacts.pt.
use rule train as train_artefacts with:
    output:
        model=PLAN.run_model("{task}", "{method}", "{seed}"),
        metrics=run_file("metrics.json"),
        curves=run_file("curves.csv"),
        artefacts=run_file("artefacts.pt"),
    wildcard_constraints:
        method=artefact_methods(),


ruleorder: train_artefacts > train
