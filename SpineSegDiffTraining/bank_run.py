"""``python -m SpineSegDiffTraining.bank_run``: the former command line of the bank stages, kept as an alias.

    python -m SpineSegDiffTraining.bank_run all|fold|diffusion2|diffusion3|bundle --bank BANK --out RUN ...

runs ``spinesegdiff-train bank-all|bank-nnunet|bank-diffusion|bank-diffusion3d|bank-bundle`` (where ``--out``
is ``--run``, ``--models`` is ``--out`` and ``--bundle-folds`` is ``--nnunet-folds``); flags a stage does not
read are ignored, as before. New scripts should call ``spinesegdiff-train`` (see :mod:`.bank`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from SpineSegDiffLib.errors import SpineSegDiffError

from .cli import STAGES

ALIASES = {"all": "bank-all", "fold": "bank-nnunet", "diffusion2": "bank-diffusion", "diffusion3": "bank-diffusion3d",
           "bundle": "bank-bundle"}
"""Former stage name -> ``spinesegdiff-train`` stage."""
RENAMED = {"out": "run", "models": "out", "bundle_folds": "nnunet_folds"}
"""Former flag -> config field, where they differ."""


def build_parser() -> argparse.ArgumentParser:
    """The former flat parser (every flag for every stage; defaults left to the stage configs)."""
    parser = argparse.ArgumentParser(prog="python -m SpineSegDiffTraining.bank_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=tuple(ALIASES))
    for flag, kind in (("--bank", Path), ("--out", Path), ("--models", Path), ("--device", str), ("--fold", str),
                       ("--minutes", float), ("--batch-size", int), ("--nnunet-minutes", float),
                       ("--diffusion-minutes", float), ("--nnunet-batch", int), ("--diffusion-batch", int),
                       ("--diffusion3d-batch", int), ("--threads", int), ("--hardware", str)):
        parser.add_argument(flag, type=kind)
    parser.add_argument("--bundle-folds", nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Translate the former arguments into the stage's config and run it."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    config_class, function = STAGES[ALIASES[args.pop("stage")]]
    values = {RENAMED.get(name, name): value for name, value in args.items() if value is not None}
    fields = dataclasses.fields(config_class)
    former = {new: old for old, new in RENAMED.items()}
    missing = [former.get(f.name, f.name) for f in fields if f.default is dataclasses.MISSING and f.name not in values]
    if missing:
        parser.error("the following arguments are required: " + ", ".join(f"--{m.replace('_', '-')}" for m in missing))
    names = {field.name for field in fields}
    config = config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})
    try:
        function(config)
    except SpineSegDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
