"""Compose a saved cascade with a saved ALL/HEM head into one model.

    python -m hybridwbc.compose cascade=<model dir> head=<model dir> output=<model dir>

The white-cell cascade learns from PBC (``+experiment=wbc5 classifier=cascade``)
and the ALL/HEM head from C-NMC (``+experiment=all_hem``); each run saves its
``model/`` folder. This writes a third model folder whose cascade sends the
cells it calls ``lymphocyte`` to the head, which says ``lymphocyte:all``
(leukaemic blast) or ``lymphocyte:hem`` (normal); the other classes are
unchanged, and every row of probabilities still sums to one. Nothing is
refitted. The head keeps its own featurizer and reads the image file, so the
cascade must take image paths (``classifier=cascade``, not
``cascade_handcrafted``). The composed model records both source folders and
the hash of the head's ``model.json``; it refuses to run if the head changes.
Use it like any model: ``python -m hybridwbc.predict model=<output> input=...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hybridwbc.cli import parse_key_values, run_cli
from hybridwbc.errors import ConfigError

__all__ = ["compose_head", "parse_args", "main"]

USAGE = "usage: python -m hybridwbc.compose cascade=<model dir> head=<model dir> output=<model dir>"
_KEYS = {"cascade", "head", "output"}


def compose_head(cascade_dir, head_dir, output_dir) -> Path:
    """Write the model of ``cascade_dir`` with the head of ``head_dir`` attached to ``output_dir``.

    Parameters
    ----------
    cascade_dir, head_dir, output_dir : str or os.PathLike
        ``model/`` folders of hybridwbc runs; ``output_dir`` is created.

    Returns
    -------
    pathlib.Path
        ``output_dir``.

    Raises
    ------
    ModelLoadError
        If either folder is not a saved model or fails its hash check.
    ConfigError
        If the first model is not a cascade, does not take image paths, or has
        no ``lymphocyte`` class for the head.
    """
    from hybridwbc.models.cascade import CascadeClassifier
    from hybridwbc.serve.pipeline import WBCPipeline
    from hybridwbc.serve.prefit import load_saved_classifier

    base = WBCPipeline.load(cascade_dir)
    if not isinstance(base.estimator, CascadeClassifier):
        raise ConfigError(
            f"{str(cascade_dir)!r} holds a {type(base.estimator).__name__}, not a CascadeClassifier. Fix: pass the "
            "model/ folder of a cascade run (python -m hybridwbc.run +experiment=wbc5 classifier=cascade)."
        )
    if base.input_kind not in ("paths", "paths_features"):
        raise ConfigError(
            f"The cascade in {str(cascade_dir)!r} takes {base.input_kind!r}, not image paths, so the head cannot "
            "read the images. Fix: train it with classifier=cascade (input paths_features)."
        )
    head = load_saved_classifier(Path(head_dir).resolve())
    estimator = base.estimator.attach_head(head, head_columns=["path"] if base.input_kind == "paths_features"
                                           else [0])
    info = dict(base.info)
    info["composed"] = {"cascade": str(Path(cascade_dir).resolve()), "head": str(Path(head_dir).resolve()),
                        "head_run_id": head.pipeline_.info.get("run_id"),
                        "head_experiment": head.pipeline_.info.get("experiment"),
                        "head_model_json_sha256": head.model_sha256_}
    out = WBCPipeline(base.featurizer, estimator, info=info, input_kind=base.input_kind,
                      domain=getattr(base, "domain", None)).save(output_dir)
    write_composed_card(out, {"cascade (white-cell types)": cascade_dir, "ALL/HEM head (lymphocytes)": head_dir})
    return out


def write_composed_card(output_dir, parts: dict) -> Path:
    """``MODEL_CARD.md`` of a composed model: what it is, then each part's own card (from the run that trained
    it; a part saved without one says so), headings moved one level down."""
    from hybridwbc.serve.pipeline import CARD_FILE

    lines = ["# Model card: composed model", "",
             "Nothing was refitted: the cascade's `lymphocyte` cells go to the head, which says `lymphocyte:all` "
             "(leukaemic blast) or `lymphocyte:hem` (normal). The head was trained on other images than the "
             "cascade (C-NMC cut-outs vs PBC crops), so read its answers on the cascade's cells as a research "
             "signal under domain shift. The cards of the parts follow.", ""]
    for name, folder in parts.items():
        card = Path(folder) / CARD_FILE
        lines += [f"## Part: {name} ({Path(folder).resolve()})", ""]
        if card.is_file():
            lines += [("#" + ln if ln.startswith("#") else ln) for ln in card.read_text().splitlines()]
        else:
            lines.append(f"(saved without a {CARD_FILE}: see the run that trained it)")
        lines.append("")
    path = Path(output_dir) / CARD_FILE
    path.write_text("\n".join(lines))
    return path


def parse_args(argv) -> dict | None:
    """``cascade=``, ``head=`` and ``output=`` from ``key=value`` arguments (``--help`` prints the usage and
    exits with status 0).

    Raises
    ------
    ConfigError
        On an unknown or malformed argument, or a missing one.
    """
    return parse_key_values(list(argv), _KEYS, set(_KEYS), USAGE, __doc__)


def main(argv=None) -> int:
    """Command-line entry point (``python -m hybridwbc.compose``); returns the exit status."""
    def command():
        args = parse_args(sys.argv[1:] if argv is None else argv)
        out = compose_head(args["cascade"], args["head"], args["output"])
        print(f"hybridwbc: wrote {out} (cascade {args['cascade']} + head {args['head']})")

    return run_cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
