"""A small mock galaxy-catalog generator: the example payload of a campaign.

Draws a seeded random catalog (positions in a periodic box, log-normal masses whose
mean evolves with redshift, per-galaxy redshifts with peculiar-velocity scatter) and
writes it to one HDF5 file. The same parameters give a byte-identical file, whatever
the number of MPI ranks: rows are drawn in fixed chunks, each chunk from its own
``SeedSequence([seed, round(redshift*1000), chunk_index])``, and rank 0 writes.

MPI is used only when a launcher reports several tasks (see ``launch_size``); a
one-rank run never imports mpi4py, so it needs no MPI library.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

GENERATOR = "campaigns.examples.mock"
FORMAT_VERSION = 1
CHUNK_ROWS = 4096  # rows drawn per random stream and the HDF5 chunk length: never change
FIELDS = ("x", "y", "z", "mass", "redshift", "id")
UNITS = {"x": "Mpc/h", "y": "Mpc/h", "z": "Mpc/h", "mass": "Msun/h", "redshift": "", "id": ""}
SIGMA_LOG_MASS = 0.5  # dex
SIGMA_VELOCITY_KMS = 300.0  # line-of-sight peculiar velocity dispersion
C_KMS = 299792.458
# Launcher variables giving the number of tasks, closest to this process first:
# Open MPI's mpirun, MPICH/Intel MPI Hydra and Slurm's PMI-2, MVAPICH, then Slurm's srun
# step (its PMIx plugin exports PMIX_RANK but no size, even for one-task steps).
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def mean_log_mass(redshift: float) -> float:
    """Mean log10 mass (Msun/h) at a redshift: galaxies are lighter at early times."""
    return 11.0 - 0.25 * redshift


def chunk_ranges(n_galaxies: int, chunk: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """The (start, stop) row ranges of the fixed chunks covering n_galaxies rows."""
    return [(start, min(start + chunk, n_galaxies)) for start in range(0, n_galaxies, chunk)]


def generate_chunk(
    seed: int, redshift: float, chunk_index: int, n_rows: int, box_size: float
) -> dict[str, np.ndarray]:
    """Draw the rows of one chunk; depends only on its arguments."""
    entropy = [seed, round(redshift * 1000), chunk_index]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
    pos = rng.uniform(0.0, box_size, size=(3, n_rows))
    log_mass = rng.normal(mean_log_mass(redshift), SIGMA_LOG_MASS, size=n_rows)
    velocity = rng.normal(0.0, SIGMA_VELOCITY_KMS, size=n_rows)
    return {
        "x": pos[0].copy(),
        "y": pos[1].copy(),
        "z": pos[2].copy(),
        "mass": np.power(10.0, log_mass),
        "redshift": redshift + (1.0 + redshift) * velocity / C_KMS,
        "id": np.arange(n_rows, dtype=np.int64) + chunk_index * CHUNK_ROWS,
    }


def rank_chunks(n_chunks: int, rank: int, size: int) -> list[int]:
    """The chunk indices a rank generates (round robin)."""
    return list(range(rank, n_chunks, size))


def generate_part(
    seed: int, redshift: float, n_galaxies: int, box_size: float, rank: int = 0, size: int = 1
) -> list[tuple[int, dict[str, np.ndarray]]]:
    """Generate one rank's share of the chunks, as (chunk_index, columns) pairs."""
    ranges = chunk_ranges(n_galaxies)
    return [
        (i, generate_chunk(seed, redshift, i, ranges[i][1] - ranges[i][0], box_size))
        for i in rank_chunks(len(ranges), rank, size)
    ]


def assemble(parts: list[list[tuple[int, dict[str, np.ndarray]]]]) -> dict[str, np.ndarray]:
    """Join the parts of all ranks into whole columns, in chunk order."""
    chunks = sorted((pair for part in parts for pair in part), key=lambda pair: pair[0])
    return {name: np.concatenate([columns[name] for _, columns in chunks]) for name in FIELDS}


def write_catalog(
    path: Path, columns: dict[str, np.ndarray], attrs: dict[str, Any], compression: str
) -> None:
    """Write the catalog to an HDF5 file, byte-reproducibly (no timestamps, fixed chunks)."""
    import h5py

    filters: dict[str, Any] = {}
    if compression == "gzip":
        filters = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    elif compression == "lzf":
        filters = {"compression": "lzf", "shuffle": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = len(columns["id"])
    f = h5py.File(path, "w", track_order=False)
    try:
        for key, value in attrs.items():
            f.attrs[key] = value
        group = f.create_group("galaxies", track_order=False)
        group.attrs["n_galaxies"] = n_rows
        for name in FIELDS:
            dataset = group.create_dataset(
                name,
                data=columns[name],
                chunks=(min(CHUNK_ROWS, n_rows),),
                track_times=False,
                track_order=False,
                **filters,
            )
            if UNITS[name]:
                dataset.attrs["units"] = UNITS[name]
        f.close()
    except BaseException:
        f.close()
        path.unlink(missing_ok=True)  # leave no half-written catalog behind
        raise


def launch_size(env: Mapping[str, str]) -> tuple[int, str | None]:
    """The task count a launcher reports in the environment, and the variable it came from."""
    for name in SIZE_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value), name
    return 1, None


def _number(kind: type, low: float, high: float = math.inf, *, open_low: bool = False) -> Any:
    """An argparse type: a finite `kind` in [low, high], or (low, high] if open_low."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not (math.isfinite(value) and low <= value <= high and not (open_low and value == low)):
            side = f"> {low:g}" if open_low else f">= {low:g}"
            limit = "" if high == math.inf else f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {side}{limit}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m campaigns.examples.mock",
        description="Write a seeded mock galaxy catalog to one HDF5 file (byte-reproducible; "
        "under mpirun/srun with several ranks the ranks share the work and rank 0 writes).",
    )
    add = p.add_argument
    add("--seed", type=_number(int, 0), required=True, help="random seed (>= 0)")
    add("--redshift", type=_number(float, 0), required=True, help="snapshot redshift (>= 0)")
    add("--output", type=Path, required=True, help="HDF5 file to write (parents are created)")
    add("--n-galaxies", type=_number(int, 0, open_low=True), default=10000, help="default 10000")
    add("--box-size", type=_number(float, 0, open_low=True), default=1000.0, help="Mpc/h")
    add(
        "--compression",
        choices=("gzip", "lzf", "none"),
        default="gzip",
        help="dataset filter (default gzip level 4, with shuffle; none: no filter)",
    )
    add(
        "--sleep",
        type=_number(float, 0),
        default=0.0,
        metavar="S",
        help="sleep S seconds before generating and writing (for tests)",
    )
    add(
        "--fail-attempt",
        type=int,
        metavar="N",
        help="for retry tests: if the environment variable CAMPAIGNS_ATTEMPT equals N, "
        "print an error and exit 3 without writing",
    )
    add(
        "--exit-code",
        type=_number(int, 0, 255),
        default=0,
        metavar="C",
        help="for failure tests: if C is not 0, exit with code C at once, writing nothing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the generator; return the process exit code."""
    args = build_parser().parse_args(argv)
    if args.exit_code:
        print(f"mock: exiting with code {args.exit_code} as asked (--exit-code)", file=sys.stderr)
        return int(args.exit_code)
    attempt = os.environ.get("CAMPAIGNS_ATTEMPT", "").strip()
    if args.fail_attempt is not None and attempt.isdigit() and int(attempt) == args.fail_attempt:
        print(
            f"error: failing on purpose: CAMPAIGNS_ATTEMPT={attempt} (--fail-attempt)",
            file=sys.stderr,
        )
        return 3
    if args.sleep:
        time.sleep(args.sleep)

    comm: Any = None
    rank, size = 0, 1
    wanted, variable = launch_size(os.environ)
    if wanted > 1:
        from mpi4py import MPI  # only now: importing it needs an MPI library

        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        if size != wanted:
            print(
                f"error: {variable}={wanted} but the MPI world has {size} rank(s); "
                "launch with mpirun or srun --mpi=pmix",
                file=sys.stderr,
            )
            return 1

    part = generate_part(args.seed, args.redshift, args.n_galaxies, args.box_size, rank, size)
    parts = comm.gather(part, root=0) if comm is not None else [part]
    error: str | None = None
    if rank == 0:
        attrs = {
            "seed": args.seed,
            "redshift": args.redshift,
            "n_galaxies": args.n_galaxies,
            "box_size": args.box_size,
            "generator": GENERATOR,
            "format_version": FORMAT_VERSION,
        }
        try:
            write_catalog(args.output, assemble(parts), attrs, args.compression)
        except (OSError, ValueError) as exc:
            error = f"cannot write {args.output}: {' '.join(str(exc).split())}"
    if comm is not None:
        error = comm.bcast(error, root=0)
    if error is not None:
        if rank == 0:
            print(f"error: {error}", file=sys.stderr)
        return 1
    if rank == 0:
        print(f"mock: wrote {args.n_galaxies} galaxies to {args.output} with {size} rank(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
