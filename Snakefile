# rbda: cross-survey domain adaptation for real/bogus alert classifiers.
#
#   snakemake --profile profiles/local                                      # the published study
#   snakemake --profile profiles/local --configfile config.yaml presets/demo.yaml   # demo (minutes)
#
# The rules are thin wiring over the `rbda` command line (docs/architecture.md).

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")
# the schema cannot refuse .nan, nor .inf where it states no bound: every number finite, before planning
from rbda.config_numbers import check_finite_numbers

check_finite_numbers(config)


include: "rules/config.smk"
include: "rules/paths.smk"
include: "rules/predict_setup.smk"
include: "rules/report_setup.smk"
include: "rules/stamp_classifier_setup.smk"
include: "rules/data.smk"
include: "rules/training.smk"
include: "rules/selection.smk"
include: "rules/report.smk"
include: "rules/stamp_classifier.smk"
include: "rules/predict.smk"


# Every output of the study: data, splits, runs, tables, statistics, figures, report, and
# the model files of config save_models, the scores of config predict and the packets of
# config surveys.S.packets.
rule all:
    default_target: True
    input:
        report_outputs(),
        stamp_classifier_outputs(),
        saved_models(),
        prediction_outputs(),
        expand(PACKETS, survey=SURVEYS_WITH_PACKETS),
