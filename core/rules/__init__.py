"""The segment rule language: a small, safe expression language, parsed by hand, never ``eval``-ed.

One job per module, in the order a rule goes through them:

- ``tokens``: rule text → tokens (and ``RuleError``, the error every step reports with a column);
- ``nodes``: the syntax tree;
- ``functions``: the built-in functions (``days_since``, ``viewed_category``, ``affinity``, …);
- ``parser``: tokens → a node tree checked against the profile's fields and types (``compile_rule``);
- ``analysis``: what a tree depends on (time atoms, time-dependence, profile fields read);
- ``context``: what evaluation reads (``Context``, the readers of times, affinities, replenishment);
- ``compiler``: a tree → closures (``compile_node``) and time atoms → flip instants (``compile_breakpoints``);
- ``definitions``: the YAML segment definitions file → checked, compiled ``SegmentDefinitions``.

Time-driven atoms (``days_since_*`` comparisons, ``within=`` windows, ``no_event``, ``replenishment_due``,
``affinity`` thresholds) know the instants at which their answer flips, so the worker schedules a
re-evaluation instead of scanning every profile. The tests keep a plain interpreter of the same trees as
their oracle (``tests/unit/test_segments/rule_oracle.py``).
"""
