# Training runs: baseline per (source, split); each adaptation method per
# (split, source, target, shots). Lambda methods (declared with lambda_grid) train their
# lambdas as members of one job per (split, source, target, shots) (config lambda_jobs: grid,
# rbda.lambda_jobs), or one job per lambda (lambda_jobs: per_lambda).
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
        code=training_code("baseline", TRAINING["model"]),
        options=training_options("baseline"),
    shell:
        "rbda train --method baseline --source {wildcards.source} {params.data}"
        " --split {wildcards.split} --seed {params.seed} --threads {threads}"
        " --model {output.model:q} --metrics {output.metrics:q}"
        " --checkpoint {params.checkpoint:q} {params.options} > {log:q} 2>&1"


# One rule per registered adaptation method (rbda.registry.ADAPTATION_METHODS: the method
# modules), train_<method>. Which of them run is the config's `methods:` (all_runs() asks
# for their outputs). Lambda methods (rbda.registry.LAMBDA_METHODS) run once per lambda of
# the grid here with lambda_jobs: per_lambda; with grid, in the grid rules below. Each job's
# code hash covers its own method and backbone modules and the shared learning code
# (rbda.provenance.run_code_sha256).
GRID_JOBS = config["lambda_jobs"] == "grid"

for _method in ADAPTATION_METHODS:
    if GRID_JOBS and _method in LAMBDA_METHODS:
        continue

    rule:
        name:
            f"train_{_method}"
        input:
            unpack(pair_data),
        output:
            **({"model": model_file(_method)} if saves_model(_method) else {}),
            metrics=run_json(_method),
            # config save_models: the run's model file too (rbda predict reads it)
        log:
            run_log(_method),
        benchmark:
            run_benchmark(_method)
        # the profile's bundle for single runs (rules/paths.smk, "Profiles name classes of rules")
        group:
            profile_group("lambda_runs" if _method in LAMBDA_METHODS else "adaptation_runs")
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
            code=training_code(_method, TRAINING["model"]),
            options=training_options(_method),
        shell:
            "rbda train --method {params.method}"
            " --source {wildcards.source} --target {wildcards.target}"
            " --init-model {input.init_model:q} {params.data} --shots {wildcards.shots}"
            " {params.lam} --split {wildcards.split} --seed {params.seed} --threads {threads}"
            " --metrics {output.metrics:q} {params.model:q} --checkpoint {params.checkpoint:q} {params.options}"
            " > {log:q} 2>&1"


# A lambda method's grid rules (lambda_jobs: grid): one job per (split, source, target, shots)
# trains its member lambdas (rbda train --lambda A B ...) and writes each member's run JSON,
# model file and checkpoint, the files of a job per lambda. Members are fixed when the
# workflow is read (rbda.lambda_jobs.split_grid): adding a lambda later trains only it.
for _method in LAMBDA_METHODS if GRID_JOBS else ():
    for _name, _members in grid_rules(_method):

        rule:
            name:
                _name
            input:
                unpack(pair_data),
            output:
                **(
                    {"model": [member_path(model_file(_method), label) for label in _members]}
                    if saves_model(_method)
                    else {}
                ),
                metrics=[member_path(run_json(_method), label) for label in _members],
            log:
                f"logs/runs/{_method}/{PAIR_RUN_ID}.lambda-{'+'.join(_members)}.log",
            benchmark:
                f"logs/benchmarks/runs/{_method}/{PAIR_RUN_ID}.lambda-{'+'.join(_members)}.tsv"
            conda:
                "../envs/rbda.yaml"
            threads: 1
            resources:
                **grid_resources(_method, len(_members)),
            params:
                # the loop variables' values now (see the rule above)
                method=_method,
                model=lambda wildcards, output: (["--model", *output.model] if "model" in output.keys() else []),
                data=lambda wildcards: data_options((wildcards.source, wildcards.target), wildcards.split),
                checkpoints=lambda wildcards, _patterns=[
                    member_path(run_checkpoint(_method), label) for label in _members
                ]: [p.format(**wildcards) for p in _patterns],
                lams=" ".join(str(LAMBDA_BY_LABEL[label]) for label in _members),
                seed=config["seed"],
                code=training_code(_method, TRAINING["model"]),
                options=training_options(_method),
            shell:
                "rbda train --method {params.method}"
                " --source {wildcards.source} --target {wildcards.target}"
                " --init-model {input.init_model:q} {params.data} --shots {wildcards.shots}"
                " --lambda {params.lams} --split {wildcards.split} --seed {params.seed} --threads {threads}"
                " --metrics {output.metrics:q} {params.model:q} --checkpoint {params.checkpoints:q}"
                " {params.options} > {log:q} 2>&1"
