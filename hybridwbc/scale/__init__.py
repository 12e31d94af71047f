"""Scale-out on existing engines: sweeps through Hydra launchers (:mod:`~hybridwbc.scale.sweep`), batch
scoring on Spark (:mod:`~hybridwbc.scale.spark`) and a shared MLflow server on PostgreSQL
(:mod:`~hybridwbc.scale.server`). Each is imported on its own (Spark and MLflow lazily)."""
