"""Batch scoring on Spark: a table of image paths through the saved pyfunc model, on the executors.

    python -m hybridwbc.score model=<model dir, pyfunc dir or models:/ URI> input=<table.csv|.parquet>
                              output=<folder.parquet|folder.csv> [master=local[2]] [min_confidence=0]
                              [partitions=0]

The table needs a ``path`` column (one image per row; a relative path resolves against the table's
folder; every executor must be able to read the paths: a shared file system or object store mount).
Unlike ``predict``'s CSV manifests, a table may name images outside its own folder (a data lake's
tables usually do): it is trusted input, so keep write access to it as tight as to the images.
The model is applied with ``mlflow.pyfunc.spark_udf(..., env_manager="local")``: each Python worker
loads the hash-checked pyfunc model once and reads its rows' images itself, so the driver never sees a
pixel. The output has exactly the columns of ``python -m hybridwbc.predict`` (``path, label, confidence,
p_<class>..., status, error``), written as Parquet or CSV part files into the output folder; an
unreadable image is an error row there too, never a failed job. ``master``: ``local[k]`` here, or a
cluster's master URL (``spark-submit`` sets it; then leave it out). PySpark is the optional extra
``scale`` (``pip install 'hybridwbc[scale]'``); Spark itself needs Java 17.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from hybridwbc.cli import parse_key_values, run_cli
from hybridwbc.errors import ConfigError, DataLayoutError

__all__ = ["spark_session", "model_uri", "output_schema", "score_table", "main"]

USAGE = ("usage: python -m hybridwbc.score model=<model dir, pyfunc dir or models:/ URI> input=<table.csv|.parquet> "
         "output=<folder.parquet|folder.csv> [master=local[2]] [min_confidence=0] [partitions=0]")
_KEYS = {"model", "input", "output", "master", "min_confidence", "partitions"}


def spark_session(master: str | None = "local[2]", app: str = "hybridwbc-score"):
    """A Spark session whose Python workers run this interpreter (and so see this environment's packages).

    Raises
    ------
    ConfigError
        If PySpark is not installed.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError("Spark scoring needs PySpark. Fix: pip install 'hybridwbc[scale]' (and Java 17).") from exc
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    spark = (builder.config("spark.ui.enabled", "false").config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def model_uri(model: str, workdir: str | os.PathLike) -> str:
    """A URI ``spark_udf`` can load: a pyfunc folder or ``models:/``/``runs:/`` URI as given (hashes checked
    for a folder); a ``model/`` folder (WBCPipeline) is saved as a pyfunc folder under ``workdir`` first."""
    from hybridwbc.serve.pipeline import WBCPipeline
    from hybridwbc.serve.pyfunc import is_pyfunc_dir, save_pyfunc, verify_pyfunc_dir

    if re.match(r"^[a-z][a-z0-9+.-]*:/", model) and not Path(model).exists():
        return model
    if is_pyfunc_dir(model):
        return str(verify_pyfunc_dir(model))
    return str(save_pyfunc(WBCPipeline.load(model), Path(workdir) / "pyfunc"))


def output_schema(uri: str) -> str:
    """The Spark DDL of the model's output columns, from its signature (``path string, label string, ...``)."""
    from mlflow.models import get_model_info

    kinds = {"string": "string", "double": "double", "float": "double", "long": "bigint", "integer": "int"}
    cols = get_model_info(uri).signature.outputs.inputs
    return ", ".join(f"`{c.name}` {kinds[c.type.name]}" for c in cols)


def _read(spark, path: str):
    p = Path(path)
    if not p.exists():
        raise DataLayoutError(f"Input table {path!r} does not exist. Expected a CSV or Parquet file (or folder) "
                              "with a 'path' column.")
    if p.suffix.lower() == ".csv":
        df = spark.read.option("header", True).csv(str(p))
    elif p.suffix.lower() == ".parquet" or p.is_dir():
        df = spark.read.parquet(str(p))
    else:
        raise DataLayoutError(f"Input table {path!r}: expected a .csv or .parquet file (or a Parquet folder).")
    if "path" not in df.columns:
        raise DataLayoutError(f"Input table {path!r} has columns {df.columns}; expected a 'path' column. "
                              "Fix: one image path per row under a 'path' header.")
    return df


def score_table(model: str, input: str, output: str, master: str | None = "local[2]", min_confidence: float = 0.0,
                partitions: int = 0, spark=None) -> dict:
    """Score every row of ``input`` with ``model`` on Spark and write ``output`` (see the module docstring).

    Returns
    -------
    dict
        ``rows``, ``errors``, ``out_of_domain`` and ``output``.

    Raises
    ------
    ConfigError, DataLayoutError, ModelLoadError
        On a missing input, a table without ``path``, an unknown output format, or a model that fails its hashes.
    """
    import mlflow
    from pyspark.sql import functions as F

    from hybridwbc.serve.pipeline import OUT_OF_DOMAIN, check_min_confidence

    min_confidence = check_min_confidence(min_confidence)
    fmt = Path(output).suffix.lower().lstrip(".")
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"output={output!r}: expected a folder name ending in .parquet or .csv.")
    spark = spark or spark_session(master)
    with tempfile.TemporaryDirectory(prefix="hybridwbc-score-") as tmp:
        uri = model_uri(model, tmp)
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=output_schema(uri), env_manager="local",
                                      params={"min_confidence": min_confidence, "n_jobs": 1})
        df = _read(spark, input)
        base = str(Path(input).resolve().parent)
        path = F.when(F.col("path").startswith("/"), F.col("path")).otherwise(F.concat(F.lit(base + "/"), "path"))
        df = df.select(path.alias("path"))
        if partitions:
            df = df.repartition(int(partitions))
        scored = df.select(udf(F.struct("path")).alias("r")).select("r.*")
        writer = scored.write.mode("overwrite")
        (writer.option("header", True).csv(output) if fmt == "csv" else writer.parquet(output))
        written = spark.read.option("header", True).csv(output) if fmt == "csv" else spark.read.parquet(output)
        counts = {r["status"]: r["count"] for r in written.groupBy("status").count().collect()}  # no rescoring
    out = {"rows": sum(counts.values()), "errors": counts.get("error", 0),
           "out_of_domain": counts.get(OUT_OF_DOMAIN, 0), "output": output}
    print(f"hybridwbc: scored {out['rows']} rows on Spark -> {output} ({out['errors']} errors, "
          f"{out['out_of_domain']} out of domain)", flush=True)
    return out


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments.

    Raises
    ------
    ConfigError
        On an unknown key, a missing required key, or an argument without ``=``.
    """
    args: dict = parse_key_values(argv, _KEYS, {"model", "input", "output"}, USAGE, __doc__)
    if "partitions" in args:
        args["partitions"] = int(args["partitions"]) if args["partitions"].isdigit() else -1
        if args["partitions"] < 0:
            raise ConfigError(f"partitions must be a non-negative integer (0: Spark's default). {USAGE}")
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m hybridwbc.score``; returns the exit status."""
    def command():
        score_table(**parse_args(sys.argv[1:] if argv is None else argv))

    return run_cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
