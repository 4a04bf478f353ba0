# Training runs: baseline per (source, split); fine-tuning per
# (split, source, target, shots); MME per (split, source, target, shots, lambda).
# One compute thread per job: on CPU, Snakemake then runs as many training
# jobs at once as there are cores, which beats one multi-threaded job.


rule train_baseline:
    """Train from scratch on the source's train part; evaluate on every survey's test part."""
    input:
        unpack(baseline_data),
    output:
        model=BASELINE_MODEL,
        metrics=run_json("baseline"),
    params:
        data=lambda wildcards: data_options(SURVEYS, wildcards.split),
        checkpoint=run_checkpoint("baseline"),
        seed=config["seed"],
        code=TRAINING_CODE,
        options=training_options("baseline"),
    threads: 1
    resources:
        **training_resources("baseline"),
    log:
        run_log("baseline"),
    benchmark:
        run_benchmark("baseline")
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda train --method baseline --source {wildcards.source} {params.data}"
        " --split {wildcards.split} --seed {params.seed} --threads {threads}"
        " --model {output.model:q} --metrics {output.metrics:q}"
        " --checkpoint {params.checkpoint:q} {params.options} > {log:q} 2>&1"


rule train_finetune:
    """Continue training the source baseline on `shots` labelled target items per class."""
    input:
        unpack(pair_data),
    output:
        metrics=run_json("finetune"),
    params:
        data=lambda wildcards: data_options((wildcards.source, wildcards.target), wildcards.split),
        checkpoint=run_checkpoint("finetune"),
        seed=config["seed"],
        code=TRAINING_CODE,
        options=training_options("finetune"),
    threads: 1
    resources:
        **training_resources("finetune"),
    log:
        run_log("finetune"),
    benchmark:
        run_benchmark("finetune")
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda train --method finetune --source {wildcards.source} --target {wildcards.target}"
        " --init-model {input.init_model:q} {params.data} --shots {wildcards.shots}"
        " --split {wildcards.split} --seed {params.seed} --threads {threads}"
        " --metrics {output.metrics:q} --checkpoint {params.checkpoint:q} {params.options}"
        " > {log:q} 2>&1"


rule train_mme:
    """Minimax Entropy from the source baseline's features, with entropy weight `lam`."""
    input:
        unpack(pair_data),
    output:
        metrics=run_json("mme"),
    params:
        data=lambda wildcards: data_options((wildcards.source, wildcards.target), wildcards.split),
        checkpoint=run_checkpoint("mme"),
        lam=lambda wildcards: LAMBDA_BY_LABEL[wildcards.lam],
        seed=config["seed"],
        code=TRAINING_CODE,
        options=training_options("mme"),
    threads: 1
    resources:
        **training_resources("mme"),
    log:
        run_log("mme"),
    benchmark:
        run_benchmark("mme")
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda train --method mme --source {wildcards.source} --target {wildcards.target}"
        " --init-model {input.init_model:q} {params.data} --shots {wildcards.shots}"
        " --lambda {params.lam} --split {wildcards.split} --seed {params.seed}"
        " --threads {threads} --metrics {output.metrics:q} --checkpoint {params.checkpoint:q}"
        " {params.options} > {log:q} 2>&1"
