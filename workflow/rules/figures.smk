localrules:
    figures,


rule figures:
    input:
        runs=figures_inputs,
    output:
        figures=directory(PLAN.figures_dir()),
    log:
        log_path("figures", "figures"),
    params:
        cmd=figures_cmd,
        values=figures_values,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "{params.cmd} > {log} 2>&1"
