"""Study results: run loading, lambda selection, tables, statistics, figures, report.

Entry points used by the command line: :mod:`rbda.results.selection`
(``rbda select-lambda``) and :mod:`rbda.results.aggregate` (``rbda aggregate``).
:func:`rbda.results.outputs.expected_outputs` names the files the aggregation
writes, for the workflow to declare; it imports nothing heavy.
"""
