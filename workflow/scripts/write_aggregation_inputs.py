"""Write the run list and the effective config that `rbda aggregate` reads.

Run by the `aggregation_inputs` rule (Snakemake `script:`): the run list is
too long for a command line in the full study (about 5,500 paths).
"""

from rbda.atomic import write_json, write_text


def main(smk) -> None:
    write_text(smk.output.runs_list, "".join(f"{path}\n" for path in smk.input.runs))
    write_json(smk.output.config, smk.params.effective_config)
    with open(smk.log[0], "w") as log:
        print(f"{len(smk.input.runs)} runs listed in {smk.output.runs_list}", file=log)


main(snakemake)  # noqa: F821 (injected by Snakemake)
