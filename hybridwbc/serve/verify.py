"""Apply a reviewer's corrections to an analysis: the verified differential and the agreement.

    python -m hybridwbc.verify analysis=<analysis dir> corrections=<corrections.csv> [output=<dir>]
        [min_count=100] [blast_threshold=5] [uncertain_share=0.2] [count_border=false]

``analysis`` is the ``output`` folder of ``python -m hybridwbc.analyze`` (it holds ``cells.csv``);
``corrections`` is the CSV the review page downloads (``cell_id`` and ``verified`` columns; a cell
it does not list keeps its pre-classification). ``verified`` is one of the model's classes,
``uncertain`` (not countable) or ``not_wbc`` (the detection is not a white cell). Writes into
``output`` (default: the analysis folder) ``verified_cells.csv``, ``verified_samples.csv`` (the
verified differential, as ``samples.csv``) and ``agreement.csv``: between the pre-classification and
the verified labels of the cells verified as a white-cell class, percent agreement and Cohen's kappa
per class (one vs rest) and overall; an ``uncertain`` pre-classification counts as a disagreement.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hybridwbc.cli import parse_key_values, run_cli
from hybridwbc.errors import ConfigError, DataLayoutError

__all__ = ["main", "verify", "parse_args"]

USAGE = ("usage: python -m hybridwbc.verify analysis=<analysis dir> corrections=<corrections.csv> [output=<dir>] "
         "[min_count=100] [blast_threshold=5] [uncertain_share=0.2] [count_border=false]")
_KEYS = {"analysis", "corrections", "output", "min_count", "blast_threshold", "uncertain_share", "count_border"}


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments.

    Raises
    ------
    ConfigError
        On an argument without ``=``, an unknown or missing key, or a bad number.
    """
    args: dict = parse_key_values(argv, _KEYS, {"analysis", "corrections"}, USAGE, __doc__)
    try:
        for k, kind in (("min_count", int), ("blast_threshold", float), ("uncertain_share", float)):
            if k in args:
                args[k] = kind(args[k])
    except ValueError as exc:
        raise ConfigError(f"{exc}. {USAGE}") from None
    if "count_border" in args:
        args["count_border"] = args["count_border"].lower() in ("true", "1")
    return args


def _read(path: Path, columns: set, what: str, fix: str):
    import pandas as pd

    if not path.is_file():
        raise DataLayoutError(f"No {what} at {str(path)!r}. Fix: {fix}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataLayoutError(f"Cannot read {what} {str(path)!r} ({exc}). Fix: {fix}") from exc
    if not columns <= set(df.columns):
        raise DataLayoutError(f"{what} {str(path)!r} lacks column(s) {sorted(columns - set(df.columns))} (it has "
                              f"{list(df.columns)}). Fix: {fix}")
    return df


def _inputs(folder: Path, corrections: str):
    cells = _read(folder / "cells.csv", {"cell_id", "sample", "label", "status", "border"}, "cells table",
                  "pass analysis=<the output folder of python -m hybridwbc.analyze>.")
    corr = _read(Path(corrections), {"cell_id", "verified"}, "corrections file",
                 "use the corrections.csv the review page downloads (columns cell_id, verified).")
    return cells, corr, [c[2:] for c in cells.columns if c.startswith("p_")]


def verify(analysis: str, corrections: str, output: str | None = None, min_count: int = 100,
           blast_threshold: float = 5.0, uncertain_share: float = 0.2, count_border: bool = False) -> dict:
    """Apply ``corrections`` to the analysis in ``analysis``; write the verified tables and the agreement.

    Returns
    -------
    dict
        ``samples`` (the verified differential), ``agreement`` (DataFrame), ``n_corrected``, ``n_not_wbc``.

    Raises
    ------
    DataLayoutError
        If ``cells.csv`` or the corrections file is missing, unreadable or lacks its columns.
    ConfigError
        If the corrections name cells the analysis does not have, or labels outside the model's classes,
        ``uncertain`` and ``not_wbc``.
    """
    import pandas as pd

    from hybridwbc.evaluate.differential import CountRules, agreement, differential
    from hybridwbc.report.review import NOT_WBC

    folder = Path(analysis)
    cells, corr, classes = _inputs(folder, corrections)
    unknown = sorted(set(corr["cell_id"]) - set(cells["cell_id"]))
    if unknown:
        raise ConfigError(f"Corrections {corrections!r} name {len(unknown)} cell(s) not in {str(folder)!r}, e.g. "
                          f"{unknown[0]!r}. Fix: apply the corrections of this analysis' own report.")
    allowed = {*classes, "uncertain", NOT_WBC}
    bad = sorted(set(corr["verified"]) - allowed)
    if bad:
        raise ConfigError(f"Corrections {corrections!r} use label(s) {bad} that are not among {sorted(allowed)}. "
                          "Fix: choose each cell's class in the review page.")
    pre = cells["label"].where(cells["status"] == "ok", "uncertain").replace("", "uncertain")
    lookup = dict(zip(corr["cell_id"], corr["verified"]))
    verified = pd.Series([lookup.get(i, v) for i, v in zip(cells["cell_id"], pre)], index=cells.index)
    out_cells = cells.assign(predicted=pre, verified=verified)
    counted = out_cells.assign(label=verified, border=cells["border"].str.lower() == "true",
                               status=["ok" if v in classes else "rejected" if v == NOT_WBC else "uncertain"
                                       for v in verified])
    rules = CountRules(min_count=min_count, blast_threshold=blast_threshold, uncertain_share=uncertain_share,
                       count_border=count_border)
    samples = pd.DataFrame([{"sample": s, **differential(g, classes, rules)}
                            for s, g in counted.groupby("sample", sort=True)])
    keep = verified.isin(classes).to_numpy()
    agree = agreement(pre[keep].tolist(), verified[keep].tolist(), classes)
    out = Path(output) if output else folder
    out.mkdir(parents=True, exist_ok=True)
    out_cells.to_csv(out / "verified_cells.csv", index=False)
    samples.to_csv(out / "verified_samples.csv", index=False)
    agree.to_csv(out / "agreement.csv", index=False)
    n_corr = int((pre != verified).sum())
    n_not = int((verified == NOT_WBC).sum())
    total = agree.iloc[-1]
    print(f"hybridwbc: verified {len(cells)} cells ({n_corr} corrected, {n_not} not white cells); agreement "
          f"{total['agreement']:.3f}, Cohen's kappa {total['kappa']:.3f} -> {out}", flush=True)
    return {"samples": samples, "agreement": agree, "n_corrected": n_corr, "n_not_wbc": n_not}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m hybridwbc.verify``); returns the exit status."""
    def command():
        verify(**parse_args(sys.argv[1:] if argv is None else argv))

    return run_cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
