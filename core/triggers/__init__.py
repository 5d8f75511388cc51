"""The trigger engine: marketer-defined triggers decided inside the profile stage.

- ``definitions``: ``config/triggers.yaml`` loaded and checked (file, line, problem);
- ``rules``: the one adapter to the segment rule language;
- ``kinds``: the small entry-facts functions a kind may name;
- ``engine``: ``TriggerRule`` and ``advance_triggers``, the pipeline the profile stage calls;
- ``guards``: the ordered guard chain and every outcome a trigger can have;
- ``payload``: the message a sender renders;
- ``pending``: pending state across a merge of two profiles.

Kept free of imports, so ``core.profile.merge`` can use ``pending`` without loading the rule language.
"""
