"""``python -m hybridwbc.data check <root> [--read]``: report what a data root holds."""

from __future__ import annotations

import argparse

from hybridwbc.cli import run_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridwbc.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="scan a data root and print classes, counts and skipped files")
    c.add_argument("root", help="data root (e.g. ../shared/data) or one data set folder")
    c.add_argument("--read", action="store_true", help="also decode every image to find corrupt files")
    args = parser.parse_args(argv)
    from hybridwbc.data.check import check_root, format_report

    return run_cli(lambda: print(format_report(check_root(args.root, read_images=args.read))))


if __name__ == "__main__":
    raise SystemExit(main())
