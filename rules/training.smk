# Training runs: baseline per (source, split); each adaptation method per
# (split, source, target, shots), lambda methods (MME, ENT) also per lambda.
# One compute thread per job: on CPU, Snakemake then runs as many training
# jobs at once as there are cores, which beats one multi-threaded job.


rule train_baseline:
    """Train from scratch on the source's train part; evaluate on every survey's test part."""
    input:
        unpack(baseline_data),
    output:
        model=BASELINE_MODEL,
        metrics=run_json("baseline"),
    log:
        run_log("baseline"),
    benchmark:
        run_benchmark("baseline")
    conda:
        "../envs/rbda.yaml"
    threads: 1
    resources:
        **training_resources("baseline"),
    params:
        data=lambda wildcards: data_options(SURVEYS, wildcards.split),
        checkpoint=run_checkpoint("baseline"),
        seed=config["seed"],
        code=TRAINING_CODE,
        options=training_options("baseline"),
    shell:
        "rbda train --method baseline --source {wildcards.source} {params.data}"
        " --split {wildcards.split} --seed {params.seed} --threads {threads}"
        " --model {output.model:q} --metrics {output.metrics:q}"
        " --checkpoint {params.checkpoint:q} {params.options} > {log:q} 2>&1"


# One rule per adaptation method of the vocabulary (rbda.study.ADAPTATION_METHODS):
# train_finetune, train_mme, train_st, train_ent, train_dann. Which of them run is
# the config's `methods:` (all_runs() asks for their outputs). Lambda methods
# (rbda.study.LAMBDA_METHODS) run once per lambda of the grid.
for _method in ADAPTATION_METHODS:

    rule:
        name:
            f"train_{_method}"
        input:
            unpack(pair_data),
        # the run JSON and, with config save_models, the run's model file (rbda predict reads it)
        output:
            **({"model": model_file(_method)} if saves_model(_method) else {}),
            metrics=run_json(_method),
        log:
            run_log(_method),
        benchmark:
            run_benchmark(_method)
        conda:
            "../envs/rbda.yaml"
        threads: 1
        resources:
            **training_resources(_method),
        params:
            # the loop variable's value now: the shell string below is formatted when a job
            # runs, after the loop has ended, so it must not name _method itself
            method=_method,
            model=lambda wildcards, output: (["--model", output.model] if "model" in output.keys() else []),
            data=lambda wildcards: data_options((wildcards.source, wildcards.target), wildcards.split),
            checkpoint=run_checkpoint(_method),
            lam=lambda_option,
            seed=config["seed"],
            code=TRAINING_CODE,
            options=training_options(_method),
        shell:
            "rbda train --method {params.method}"
            " --source {wildcards.source} --target {wildcards.target}"
            " --init-model {input.init_model:q} {params.data} --shots {wildcards.shots}"
            " {params.lam} --split {wildcards.split} --seed {params.seed} --threads {threads}"
            " --metrics {output.metrics:q} {params.model:q} --checkpoint {params.checkpoint:q} {params.options}"
            " > {log:q} 2>&1"
