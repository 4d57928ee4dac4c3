"""``spinesegdiff-train``: retrain the presegmentation (nnU-Net v2), the diffusion models and the disc grader.

Work-folder path (nnU-Net's own training; every stage resumes from WORK, the split WORK/splits.json is
made once and reused):

    spinesegdiff-train all --data DATA --work WORK --out Resources/Models
    spinesegdiff-train STAGE ...    (prepare, nnunet, diffusion, diffusion3d, bundle, evaluate,
                                     evaluate-volumes, evaluate-thick, grading)

Slice-bank path (any device, time budgets; every stage resumes from RUN):

    spinesegdiff-train export-bank --data DATA --work WORK --bank BANK
    spinesegdiff-train bank-all --bank BANK --run RUN --device cuda
    spinesegdiff-train bank-bundle --bank BANK --run RUN --out Resources/Models
    (bank-all runs bank-nnunet, bank-diffusion and bank-diffusion3d)

``spinesegdiff-train STAGE --help`` lists the settings of one stage. Each stage is a Python function of a
typed config (:mod:`SpineSegDiffTraining.configs`); :data:`STAGES` maps the names to both.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Callable

from SpineSegDiffLib.errors import SpineSegDiffError

from . import configs as c


def _stage(module: str, name: str) -> Callable:
    """The stage function ``module.name``, imported when called: ``--help`` and the bank stages (which travel
    without SimpleITK) import only what they run."""

    def run(config):
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(config)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"{__package__}.{module}.{name}"
    return run


STAGES: dict[str, tuple[type, Callable]] = {
    "prepare": (c.PrepareConfig, _stage("stages", "run_prepare")),
    "nnunet": (c.NnunetConfig, _stage("stages", "run_nnunet")),
    "diffusion": (c.DiffusionConfig, _stage("stages", "run_diffusion")),
    "diffusion3d": (c.Diffusion3dConfig, _stage("stages", "run_diffusion3d")),
    "bundle": (c.BundleConfig, _stage("bundle", "run_bundle")),
    "evaluate": (c.EvaluateConfig, _stage("stages", "run_evaluate")),
    "evaluate-volumes": (c.EvaluateVolumesConfig, _stage("stages", "run_evaluate_volumes")),
    "evaluate-thick": (c.EvaluateThickConfig, _stage("stages", "run_evaluate_thick")),
    "grading": (c.GradingConfig, _stage("grading", "run_grading")),
    "all": (c.AllConfig, _stage("stages", "run_all")),
    "export-bank": (c.ExportBankConfig, _stage("stages", "run_export_bank")),
    "bank-nnunet": (c.BankNnunetConfig, _stage("bank", "run_bank_nnunet")),
    "bank-diffusion": (c.BankDiffusionConfig, _stage("bank", "run_bank_diffusion")),
    "bank-diffusion3d": (c.BankDiffusion3dConfig, _stage("bank", "run_bank_diffusion3d")),
    "bank-all": (c.BankAllConfig, _stage("bank", "run_bank_all")),
    "bank-bundle": (c.BankBundleConfig, _stage("bundle", "run_bank_bundle")),
}
"""Stage name -> (its config class, its function)."""


def _argument_type(hint) -> dict:
    """``add_argument`` keywords for a field annotated ``hint`` (``X | None``, ``Literal``, ``tuple``, scalars)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin, items = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"choices": items}
    if origin is tuple:
        return {"type": items[0], "nargs": "+" if items[-1] is Ellipsis else len(items)}
    return {"type": hint}


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One ``--flag`` per field of ``config_class``: required when the field has no default."""
    hints = typing.get_type_hints(config_class)
    for field in sorted(dataclasses.fields(config_class), key=lambda f: f.default is not dataclasses.MISSING):
        required = field.default is dataclasses.MISSING
        text = field.metadata.get("help", "")
        if not required and field.default is not None:
            shown = " ".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
            text += f" (default: {shown})"
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, required=required,
                            default=None if required else field.default, help=text.replace("%", "%%").replace("``", ""),
                            **_argument_type(hints[field.name]), **field.metadata.get("argparse", {}))


def config_from_arguments(config_class: type, args: argparse.Namespace):
    """``config_class`` from parsed arguments (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)}
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def to_argv(config) -> list[str]:
    """The command-line arguments that rebuild ``config`` (None fields left out)."""
    argv = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is not None:
            argv += [f"--{field.name.replace('_', '-')}", *map(str, value if isinstance(value, tuple) else [value])]
    return argv


def build_parser() -> argparse.ArgumentParser:
    """``spinesegdiff-train`` with one subcommand per stage of :data:`STAGES`, each with its config's flags."""
    parser = argparse.ArgumentParser(prog="spinesegdiff-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (config_class, _) in STAGES.items():
        summary = (config_class.__doc__ or "").split("\n")[0].split(": ", 1)[-1].replace("``", "")
        add_config_arguments(sub.add_parser(name, help=summary, description=summary), config_class)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one stage; a :class:`SpineSegDiffError` is printed (no traceback) and exits with 2."""
    args = build_parser().parse_args(argv)
    config_class, function = STAGES[args.stage]
    try:
        function(config_from_arguments(config_class, args))
    except SpineSegDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
