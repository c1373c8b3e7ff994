"""The ``deepcr-dask`` command: models, clean, archive, demo, evaluate, train."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .models.thresholds import FPR_LEVELS

__all__ = ["main"]


def _models(args: argparse.Namespace) -> int:
    if args.action == "check":
        from .inference.card_check import check_model_card

        if not args.card:
            print("deepcr-dask: error: models check needs a model card path", file=sys.stderr)
            return 2
        problems = check_model_card(args.card)
        for problem in problems:
            print(f"{args.card}: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.card}: ok")
        return 2 if problems else 0
    from .models.thresholds import fpr_thresholds
    from .models.zoo import registered_specs
    from .nn import reach, receptive_field

    rows = [("name", "kind", "instrument", "units", "threshold", "thresholds@fpr(1e-4/5e-4/5e-3)",
             "receptive_field", "reach", "source")]
    for spec in registered_specs():
        if args.kind and spec.kind != args.kind:
            continue
        net = spec.architecture.build()  # geometry from the architecture: no weights read
        by_fpr = fpr_thresholds(spec)
        levels = "/".join(f"{by_fpr[f]:.3g}" for f in FPR_LEVELS if f in by_fpr) or "-"
        rows.append((spec.name, spec.kind, spec.instrument or "-", spec.units, f"{spec.threshold:g}", levels,
                     str(receptive_field(net)), str(reach(net)), spec.source))
    if len(rows) == 1:
        print("no models found (the deepCR zoo needs `pip install deepcr`)", file=sys.stderr)
        return 1
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from .archive.pipeline import CleanOptions, clean_file

    options = CleanOptions(model=args.model, inpaint=args.inpaint, threshold=args.threshold, dq_bit=args.dq_bit,
                           gain=args.gain, crmask_extension=args.crmask, probability=args.crprob, device=args.device,
                           kernels=args.kernels, clean_anyway=tuple(args.clean_anyway),
                           inpaint_suspect=args.inpaint_suspect, fpr=args.fpr)
    result = clean_file(args.input, options, output=args.output)
    for chip in result.chips:
        print(f"{chip.chip.name}: {int(chip.mask.sum())} cosmic-ray pixels ({chip.mask.mean():.4%})")
        for reason in chip.suspect:
            print(f"  SUSPECT: {reason}; flagged, not inpainted" if not chip.inpainted else f"  SUSPECT: {reason}")
    print(f"wrote {result.fits_output} (model {result.provenance.model}, threshold {result.provenance.threshold:g}, "
          f"{result.seconds:.1f} s)")
    return 3 if args.strict and result.suspect else 0


def _archive(args: argparse.Namespace) -> int:
    from .archive.run import process_archive

    cluster = args.cluster
    handle = None
    security = {"security": True} if args.tls else {}  # temporary self-signed certificates for this run
    if args.tls_files:  # the credentials a batch job wrote for its scheduler and workers
        from .distributed.tls import security_from_files

        security = {"security": security_from_files(args.tls_files)}
    if cluster == "local" and (args.workers or args.threads_per_worker or security):
        from .distributed.cluster import make_cluster

        local = {"threads_per_worker": args.threads_per_worker or 1, **security}
        if args.workers:
            local["n_workers"] = args.workers
        handle = make_cluster("local", **local)
        cluster = handle
    elif cluster.lower().split(":")[0] == "slurm":
        from .distributed.cluster import make_cluster

        options = {"config": args.jobqueue_config} if args.jobqueue_config else {}
        if not args.workers:  # without jobs the run would wait for a worker that is never asked for
            print("deepcr-dask: no --workers given: submitting 1 worker job (--workers N for more)", file=sys.stderr)
        options["jobs"] = args.workers or 1
        handle = make_cluster(cluster, **options, **security)
        cluster = handle
    elif security:
        from .distributed.cluster import make_cluster

        handle = make_cluster(cluster, **security)
        cluster = handle
    try:
        summary = process_archive(
            args.inputs, args.output, zarr_path=args.zarr, cluster=cluster, model=args.model, inpaint=args.inpaint,
            threshold=args.threshold, dq_bit=args.dq_bit, gain=args.gain, write_fits=not args.no_fits,
            crmask_extension=args.crmask, probability=args.crprob, overwrite=args.overwrite,
            progress=not args.no_progress, report=args.performance_report, device=args.device,
            kernels=args.kernels, dask_chip_pixels=args.dask_chip_pixels, include=args.include or (),
            exclude=args.exclude or (), clean_anyway=tuple(args.clean_anyway), inpaint_suspect=args.inpaint_suspect,
            strict=args.strict, use_groups=not args.no_groups, fpr=args.fpr, manifest=args.manifest,
            compress=args.compress,
        )
    finally:
        if handle is not None:
            handle.close()
    print(summary.table(verbose=args.verbose))
    print(f"outputs: {summary.output_dir}" + (f"; zarr: {summary.zarr_path}" if summary.zarr_path else "")
          + f"; manifest: {summary.manifest_path}")
    if args.report:
        from .archive.report import write_report

        print(f"report: {write_report(summary.output_dir, manifest=summary.manifest_path)}")
    return summary.exit_code


def _report(args: argparse.Namespace) -> int:
    from .archive.report import write_report

    print(f"wrote {write_report(args.output, args.html, manifest=args.manifest)}")
    return 0


def _tls_files(args: argparse.Namespace) -> int:
    from .distributed.tls import write_tls_files

    for role, path in write_tls_files(args.folder).items():
        print(f"{role}: {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.output), workers=args.workers, n_files=args.files)


def _evaluate(argv: list[str]) -> int:
    from .evaluate import evaluate_main

    return evaluate_main(argv)


def _train(argv: list[str]) -> int:
    from .training.train import train_main

    return train_main(argv)


def _inpaint_choice(value: str) -> str | None:
    """``--inpaint``: a model name, ``auto``, or ``median``/``none`` for the local median."""
    return None if value.lower() in ("median", "none") else value


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="mask model name or weight path (default: chosen from INSTRUME/DETECTOR)")
    p.add_argument("--inpaint", default="auto", type=_inpaint_choice,
                   help="inpaint model, or 'median' for the local median of good pixels (default 'auto': the "
                        "camera's default, a network only where it beat the median on real pairs)")
    thresholds = p.add_mutually_exclusive_group()
    thresholds.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    thresholds.add_argument("--fpr", type=float, choices=FPR_LEVELS, metavar="{1e-4,5e-4,5e-3}",
                            help="instead of --threshold: the threshold the model records for this "
                                 "false-positive rate on its validation frames")
    p.add_argument("--dq-bit", type=_dq_bit, default=8192, help="DQ bit set on cosmic-ray pixels (default 8192)")
    p.add_argument("--gain", type=float, help="e-/DN, overriding the header's units and gain keywords")
    p.add_argument("--crmask", action="store_true", help="add a CRMASK extension for every chip")
    p.add_argument("--crprob", action="store_true", help="add CRPROB extensions (and Zarr probability arrays)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--clean-anyway", type=_product_types, default=(), metavar="TYPE[,TYPE]",
                   help="clean these product types although they are not single calibrated images: "
                        "raw, combined, spectrum, up-the-ramp, photon-counting")
    p.add_argument("--inpaint-suspect", action="store_true",
                   help="inpaint chips the quality gates call suspect (default: flag them only)")
    p.add_argument("--strict", action="store_true", help="exit code 3 when any chip is suspect")
    p.add_argument("--kernels", choices=["reference", "fast"], default="reference",
                   help="reference (default): deepCR's own arithmetic, within 1e-5 of deepCR; fast: BatchNorm "
                        "folded and channels-last convolutions, ~1.1-1.5x faster on CPUs, up to ~2.1e-5 from "
                        "deepCR")


def _dq_bit(text: str) -> int:
    value = int(text)
    if value <= 0 or value & (value - 1) or value > 1 << 30:
        raise argparse.ArgumentTypeError(f"{text} is not a single DQ bit (a power of two, 1 to 2**30)")
    return value


def _product_types(text: str) -> tuple[str, ...]:
    from .io.products import PRODUCT_TYPES

    types = tuple(t.strip() for t in text.split(",") if t.strip())
    wrong = [t for t in types if t not in PRODUCT_TYPES or t == "dq"]
    if wrong:
        raise argparse.ArgumentTypeError(f"unknown product type(s) {', '.join(wrong)}; "
                                         f"known: {', '.join(t for t in PRODUCT_TYPES if t != 'dq')}")
    return types


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="deepcr-dask", description="Deep-learning cosmic-ray removal.")
    parser.add_argument("--version", action="version", version=f"deepcr-dask {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the available models, or `models check CARD` to validate one")
    p.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    p.add_argument("card", nargs="?", help="with check: a model card (.json) or its .safetensors")
    p.add_argument("--kind", choices=["mask", "inpaint"])
    p.set_defaults(func=_models)

    p = sub.add_parser("clean", help="clean one FITS file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="cleaned FITS file to write")
    _add_model_options(p)
    p.set_defaults(func=_clean)

    p = sub.add_parser("archive", help="clean every FITS file under folders or globs, resumably")
    p.add_argument("inputs", nargs="+",
                   help="files, folders (recursive) or glob patterns; or URLs of one object store (s3://...)")
    p.add_argument("-o", "--output", required=True,
                   help="output folder or URL (cleaned FITS; manifest.sqlite in a local folder)")
    p.add_argument("--zarr", help="Zarr v3 store (path or URL) for masks and cleaned images")
    p.add_argument("--manifest", help="the run's SQLite manifest, a local file (default: OUTPUT/manifest.sqlite; "
                                      "for an output URL, under ~/.cache/deepcr-dask/manifests)")
    p.add_argument("--cluster", default="local",
                   help="local | cuda | slurm | tcp://ADDRESS | scheduler-file:PATH (default local)")
    p.add_argument("--workers", type=int, help="worker processes (local) or worker jobs (slurm; default 1)")
    p.add_argument("--jobqueue-config", help="jobqueue.yaml for --cluster slurm")
    p.add_argument("--overwrite", action="store_true", help="clean files again even if complete")
    p.add_argument("--no-fits", action="store_true", help="write no cleaned FITS files")
    p.add_argument("--report", action="store_true",
                   help="write OUTPUT/report.html: the run's QA page (flagged fractions, suspect and failed files "
                        "first, thumbnails with the masks)")
    p.add_argument("--performance-report", help="write a Dask performance report (HTML) to this path")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads-per-worker", type=int, help="threads (and torch threads) per local worker (default 1)")
    p.add_argument("--tls", "--security", action="store_true", dest="tls",
                   help="TLS between client, scheduler and workers (temporary self-signed certificates); for "
                        "shared clusters")
    p.add_argument("--tls-files", metavar="DIR",
                   help="TLS with the CA, certificate and key in DIR (written by `deepcr-dask tls-files DIR`), "
                        "for a scheduler and workers started with the same files (deploy/slurm)")
    p.add_argument("--include", action="append", metavar="GLOB",
                   help="only files whose path (relative to the inputs' root) or name matches; repeatable")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="leave out matching files; repeatable")
    p.add_argument("--no-groups", action="store_true",
                   help="clean every exposure on its own, without fusing repeat exposures of one pointing")
    p.add_argument("--dask-chip-pixels", type=int,
                   help="chips with more pixels are cleaned as dask arrays over the whole cluster "
                        "(default 64 Mpix, larger than any HST chip)")
    p.add_argument("--compress", action="store_true",
                   help="cleaned copies keep the input's compression (.gz, .bz2, .fz tiles; float pixels of a "
                        ".fz are quantised as the input's were); default plain FITS")
    p.add_argument("--verbose", action="store_true", help="list every file that is not FITS by name")
    _add_model_options(p)
    p.set_defaults(func=_archive)

    p = sub.add_parser("report", help="write the QA page (HTML) of an archive run's output folder")
    p.add_argument("output", help="the archive run's output folder (with manifest.sqlite)")
    p.add_argument("--html", help="where to write the page (default OUTPUT/report.html)")
    p.add_argument("--manifest", help="the run's manifest, if --manifest put it elsewhere")
    p.set_defaults(func=_report)

    p = sub.add_parser("tls-files", help="write a temporary CA, certificate and key (private folder) for a "
                                         "scheduler, workers and driver started separately")
    p.add_argument("folder")
    p.set_defaults(func=_tls_files)

    p = sub.add_parser("demo", help="clean a small built-in archive on the local cluster")
    p.add_argument("--output", default="demo-output")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--files", type=int, default=4, help="synthetic ACS/WFC-like files to make")
    p.set_defaults(func=_demo)

    sub.add_parser("evaluate", help="ROC and inpainting benchmark (see `deepcr-dask evaluate --help`)",
                   add_help=False)
    sub.add_parser("train", help="train mask / inpaint models (see `deepcr-dask train --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 some files failed, 2 usage or input error, 3 suspect chips
    under ``--strict``, 4 an archive run that cleaned nothing although it looked)."""
    from .errors import DeepCRDaskError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("evaluate", "train"):
        return {"evaluate": _evaluate, "train": _train}[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DeepCRDaskError as exc:
        print(f"deepcr-dask: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
