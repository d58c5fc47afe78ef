"""``deleverage tune``: calibrate a policy's parameters by backtest (optuna), and size the insurance fund.

``space`` (the ``--param`` specs), ``objective`` (the yardstick's weighted sum and hard limits),
``scenarios`` (real days and synthetic crashes drawn from ranges), ``runs`` (the runs, in worker
processes), ``search`` (the study, held-out comparison, outputs), ``fund`` (the fund that keeps losses
off ADL in a share of the stress scenarios), ``policy_file`` (a policy written as TOML).
"""
