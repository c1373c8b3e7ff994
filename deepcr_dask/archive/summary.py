"""What an archive run did: every file accounted for, as a table, a list of lines and an exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NOTHING_CLEANED", "ArchiveSummary", "tally"]

NOTHING_CLEANED = 4  # the exit code of a run that cleaned nothing


@dataclass
class ArchiveSummary:
    """Outcome of :func:`process_archive`."""

    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_kinds: dict[str, str] = field(default_factory=dict)  # path -> product type
    not_fits: list[str] = field(default_factory=list)  # files under the inputs whose names do not say FITS
    suspect: dict[str, list[str]] = field(default_factory=dict)  # path -> "CHIP: reason" lines
    retried: dict[str, str] = field(default_factory=dict)  # path -> why its task ran again (a worker was lost)
    lost_workers: list[str] = field(default_factory=list)  # one line per worker lost during the run
    outliers: dict[str, str] = field(default_factory=dict)  # "path CHIP" -> reason (the run's own distribution)
    cr_pixels: int = 0
    pixels: int = 0
    seconds: float = 0.0
    output_dir: str = ""
    zarr_path: str | None = None
    strict: bool = False
    manifest_path: str = ""

    @property
    def exit_code(self) -> int:
        """0 files cleaned, 1 some failed, 3 suspect chips under ``strict``, 4 nothing cleaned (for scripts and
        SLURM)."""
        if self.failed:
            return 1
        if not self.done and not self.already_done:
            return NOTHING_CLEANED
        return 3 if self.strict and self.suspect else 0

    def skipped_by_kind(self) -> dict[str, tuple[int, str]]:
        """Product type -> (files, one example), most files first."""
        counts: dict[str, list[str]] = {}
        for path in sorted(self.skipped):
            counts.setdefault(self.skipped_kinds.get(path) or "other", []).append(path)
        return {kind: (len(paths), paths[0]) for kind, paths in sorted(counts.items(), key=lambda kv: -len(kv[1]))}

    def nothing_cleaned(self) -> str:
        """The one line a run that cleaned nothing prints (empty otherwise)."""
        if self.exit_code != NOTHING_CLEANED:
            return ""
        found = len(self.skipped) + len(self.not_fits)
        if not found:
            return "NOTHING CLEANED: no file found under the inputs (exit code 4)"
        kinds = ", ".join(f"{n} {kind}" for kind, (n, _) in self.skipped_by_kind().items())
        return (f"NOTHING CLEANED: {found} file(s) found, none an image to clean: "
                f"{len(self.skipped)} skipped by design" + (f" ({kinds})" if kinds else "")
                + f", {len(self.not_fits)} not FITS by name (exit code 4)")

    def table(self, verbose: bool = False) -> str:
        """The run's outcome as a Markdown table, then one line per failed, suspect and skipped file."""
        nothing = self.nothing_cleaned()
        lines = [nothing] if nothing else []
        lines += [
            "| outcome | files |",
            "|---|---|",
            f"| cleaned now | {len(self.done)} |",
            f"| with suspect chips (flagged, not inpainted) | {len(self.suspect)} |",
            f"| already complete | {len(self.already_done)} |",
            f"| not cleaned by design | {len(self.skipped)} |",
            f"| failed | {len(self.failed)} |",
            f"| not FITS by name | {len(self.not_fits)} |",
        ]
        if self.retried:
            lines.append(f"| rescheduled after losing a worker (counted above) | {len(self.retried)} |")
        if self.skipped:
            lines += ["", "| skipped as | files | for example |", "|---|---|---|"]
            lines += [f"| {kind} | {n} | {Path(example).name} |"
                      for kind, (n, example) in self.skipped_by_kind().items()]
        fraction = self.cr_pixels / self.pixels if self.pixels else 0.0
        lines.append(f"\n{self.cr_pixels} cosmic-ray pixels in {self.pixels} ({fraction:.4%}); "
                     f"{self.seconds:.1f} s wall")
        lines += [f"LOST    worker {line}" for line in self.lost_workers]
        lines += [f"RETRIED {path}: {reason}" for path, reason in sorted(self.retried.items())]
        for path, reason in sorted(self.failed.items()):
            lines.append(f"FAILED  {reason}" if reason.startswith(path) else f"FAILED  {path}: {reason}")
        for path, reasons in sorted(self.suspect.items()):
            lines += [f"SUSPECT {path} {reason}" for reason in reasons]
        for key, reason in sorted(self.outliers.items()):
            lines.append(f"OUTLIER {key}: {reason}")
        for path, reason in sorted(self.skipped.items()):
            lines.append(f"SKIPPED {reason}" if reason.startswith(path) else f"SKIPPED {path}: {reason}")
        if verbose:
            lines += [f"NOT FITS {path}" for path in self.not_fits]
        elif self.not_fits:
            lines.append(f"NOT FITS {len(self.not_fits)} file(s) whose names do not say FITS, e.g. "
                         f"{self.not_fits[0]} (all listed with --verbose)")
        return "\n".join(lines)


def tally(rows: list[dict], summary: ArchiveSummary) -> None:
    """Count manifest rows into the summary: each file failed, skipped (with its type) or done (suspect chips noted)."""
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    for path, file_rows in by_path.items():
        statuses = {row["status"] for row in file_rows}
        if "failed" in statuses:
            summary.failed[path] = next(row["error"] for row in file_rows if row["status"] == "failed")
        elif statuses == {"skipped"}:
            summary.skipped[path] = file_rows[0]["error"]
            summary.skipped_kinds[path] = file_rows[0].get("product") or "other"
        else:
            summary.done.append(path)
            reasons = [f"{row['chip']}: {row['error']}" for row in file_rows if row["status"] == "suspect"]
            if reasons:
                summary.suspect[path] = reasons
