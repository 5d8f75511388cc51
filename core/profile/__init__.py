"""The per-customer 360° profile: how events change it and how it is shown.

Modules, one job each (import from them; this package re-exports nothing):

- ``policy``   — the caps of every stored collection and ``ProfilePolicy`` (defaults defined once);
- ``apply``    — ``apply_event``: one event applied to a profile (``identify`` and ``orders`` hold the
  handlers of identify calls and of orders/refunds; ``affinity`` and ``bounded`` their shared helpers);
- ``merge``    — ``merge_profiles``: two profiles of one customer merged into one;
- ``document`` — ``profile_document``: the API's JSON view.

The stored record types (``Profile``, ``CartItem``, ``Affinity``, ``OrderRecord``) are in
``schemas.profile``; the computed traits (average order value, RFM, lifecycle stage, …) in
``core.traits``.
"""
