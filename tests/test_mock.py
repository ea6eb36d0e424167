"""Tests of the example payload campaigns.examples.mock (real HDF5 files in tmp_path)."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from campaigns.examples import mock

SRC = Path(__file__).resolve().parents[1] / "src"
MPI_ENV_VARS = (*mock.SIZE_VARIABLES, "PMIX_RANK", "PMI_RANK", "SLURM_NTASKS", "SLURM_PROCID")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as a plain one-rank process even if pytest itself runs inside srun/mpirun."""
    for name in (*MPI_ENV_VARS, "CAMPAIGNS_ATTEMPT"):
        monkeypatch.delenv(name, raising=False)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MPI_ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run(
    args: list[str], *, launcher: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    cmd = [*(launcher or []), sys.executable, "-m", "campaigns.examples.mock", *args]
    return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300)


def _args(out: Path, seed: int = 7, redshift: float = 1.5, *extra: str) -> list[str]:
    return ["--seed", str(seed), "--redshift", str(redshift), "--output", str(out), *extra]


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f["galaxies"][name][()] for name in mock.FIELDS}


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_same_parameters_give_byte_identical_files(tmp_path: Path, compression: str) -> None:
    a, b = tmp_path / "a" / "out.hdf5", tmp_path / "b" / "deeper" / "out.hdf5"
    assert mock.main(_args(a, 7, 1.5, "--compression", compression)) == 0
    assert mock.main(_args(b, 7, 1.5, "--compression", compression)) == 0
    assert filecmp.cmp(a, b, shallow=False)


def test_byte_identical_across_processes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    assert mock.main(_args(a, 3, 0.25)) == 0
    done = _run(_args(b, 3, 0.25, "--sleep", "1.1"))  # a later second: no timestamps in the file
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mock: wrote 10000 galaxies to {b} with 1 rank(s)"
    assert filecmp.cmp(a, b, shallow=False)


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    assert mock.main(_args(tmp_path / "a.hdf5", 1)) == 0
    assert mock.main(_args(tmp_path / "b.hdf5", 2)) == 0
    a, b = _read(tmp_path / "a.hdf5"), _read(tmp_path / "b.hdf5")
    for name in ("x", "y", "z", "mass", "redshift"):
        assert not np.array_equal(a[name], b[name]), name
    assert np.array_equal(a["id"], b["id"])


def test_datasets_and_attributes(tmp_path: Path) -> None:
    out = tmp_path / "cat.hdf5"
    assert mock.main(_args(out, 11, 2.0, "--n-galaxies", "9000", "--box-size", "250")) == 0
    with h5py.File(out, "r") as f:
        assert dict(f.attrs) == {
            "seed": 11,
            "redshift": 2.0,
            "n_galaxies": 9000,
            "box_size": 250.0,
            "generator": "campaigns.examples.mock",
            "format_version": 1,
        }
        group = f["galaxies"]
        assert sorted(group) == sorted(mock.FIELDS)
        assert group.attrs["n_galaxies"] == 9000
        for name in mock.FIELDS:
            data = group[name]
            assert data.shape == (9000,)
            assert data.dtype == (np.int64 if name == "id" else np.float64)
            assert data.compression == "gzip" and data.compression_opts == 4
            assert data.chunks == (mock.CHUNK_ROWS,)
            if name != "id":
                assert np.isfinite(data[()]).all()
        for axis in "xyz":
            values = group[axis][()]
            assert values.min() >= 0.0 and values.max() < 250.0
            assert group[axis].attrs["units"] == "Mpc/h"
        assert np.array_equal(group["id"][()], np.arange(9000))
        assert (group["mass"][()] > 0).all()
        assert abs(group["redshift"][()].mean() - 2.0) < 1e-3


def test_no_compression_means_no_filter(tmp_path: Path) -> None:
    out = tmp_path / "plain.hdf5"
    assert mock.main(_args(out, 1, 0.0, "--compression", "none")) == 0
    with h5py.File(out, "r") as f:
        for name in mock.FIELDS:
            assert f["galaxies"][name].compression is None
            assert not f["galaxies"][name].shuffle


def test_redshift_changes_the_catalog(tmp_path: Path) -> None:
    columns = {}
    for z in (0.0, 1.5, 3.0):
        out = tmp_path / f"z{z}.hdf5"
        assert mock.main(_args(out, 7, z)) == 0
        columns[z] = _read(out)
    assert not np.array_equal(columns[0.0]["x"], columns[1.5]["x"])
    log_mass = [np.log10(columns[z]["mass"]).mean() for z in (0.0, 1.5, 3.0)]
    assert log_mass[0] > log_mass[1] > log_mass[2]  # lighter galaxies at higher redshift
    for z in (0.0, 1.5, 3.0):
        assert abs(np.median(columns[z]["redshift"]) - z) < 1e-3


def test_exit_code_exits_at_once_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.hdf5"
    done = _run(_args(out, 7, 1.5, "--exit-code", "5"))
    assert done.returncode == 5
    assert not out.exists() and not out.parent.exists()


def test_fail_attempt(tmp_path: Path) -> None:
    out = tmp_path / "out.hdf5"
    failed = _run(_args(out, 7, 1.5, "--fail-attempt", "2"), CAMPAIGNS_ATTEMPT="2")
    assert failed.returncode == 3
    assert failed.stderr.startswith("error:") and len(failed.stderr.splitlines()) == 1
    assert not out.exists()
    passed = _run(_args(out, 7, 1.5, "--fail-attempt", "2"), CAMPAIGNS_ATTEMPT="1")
    assert passed.returncode == 0, passed.stderr
    assert out.exists()
    assert "CAMPAIGNS_ATTEMPT" in _run(["--help"]).stdout


def test_argument_errors_exit_2(tmp_path: Path) -> None:
    for bad in (
        ["--seed", "7"],
        _args(tmp_path / "o.hdf5", 7, -1.0),
        _args(tmp_path / "o.hdf5", 7, 1.0, "--compression", "zstd"),
        _args(tmp_path / "o.hdf5", 7, 1.0, "--n-galaxies", "0"),
    ):
        with pytest.raises(SystemExit) as exc:
            mock.main(bad)
        assert exc.value.code == 2
    assert not (tmp_path / "o.hdf5").exists()


def test_write_failure_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    assert mock.main(_args(tmp_path / "a_file" / "out.hdf5")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and len(err.splitlines()) == 1
    assert mock.main(_args(tmp_path)) == 1  # the output is a directory
    assert capsys.readouterr().err.startswith("error: cannot write")


def test_one_rank_does_not_import_mpi4py(tmp_path: Path) -> None:
    code = (
        "import sys; from campaigns.examples import mock; "
        f"rc = mock.main({_args(tmp_path / 'o.hdf5')!r}); "
        "sys.exit(10 + rc if 'mpi4py' in sys.modules else rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(SLURM_NTASKS="1", SLURM_STEP_NUM_TASKS="1", PMIX_RANK="0"),
        timeout=120,
    )
    assert done.returncode == 0


@pytest.mark.parametrize("n_galaxies", [1, 4096, 10000, 3 * 4096 + 17])
def test_chunk_ranges_cover_the_rows(n_galaxies: int) -> None:
    ranges = mock.chunk_ranges(n_galaxies)
    assert ranges[0][0] == 0 and ranges[-1][1] == n_galaxies
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(0 < stop - start <= mock.CHUNK_ROWS for start, stop in ranges)


@pytest.mark.parametrize("size", [2, 3, 7])
def test_catalog_independent_of_rank_count(size: int) -> None:
    args = (5, 0.7, 5 * 4096 + 123, 500.0)
    whole = mock.assemble([mock.generate_part(*args)])
    split = mock.assemble([mock.generate_part(*args, rank, size) for rank in range(size)])
    for name in mock.FIELDS:
        assert np.array_equal(whole[name], split[name]), name
        assert len(whole[name]) == args[2]


def test_generate_chunk_is_pure_and_seed_sensitive() -> None:
    a = mock.generate_chunk(7, 1.5, 2, 100, 1000.0)
    assert all(
        np.array_equal(a[k], v) for k, v in mock.generate_chunk(7, 1.5, 2, 100, 1000.0).items()
    )
    assert not np.array_equal(a["x"], mock.generate_chunk(7, 1.5, 3, 100, 1000.0)["x"])
    assert not np.array_equal(a["x"], mock.generate_chunk(7, 1.501, 2, 100, 1000.0)["x"])
    assert np.array_equal(a["id"], np.arange(2 * mock.CHUNK_ROWS, 2 * mock.CHUNK_ROWS + 100))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, 1),  # an allocation, not a launch
        ({"PMIX_RANK": "0"}, 1),  # Slurm's PMIx plugin sets it even for one task
        ({"SLURM_STEP_NUM_TASKS": "1"}, 1),
        ({"SLURM_STEP_NUM_TASKS": "4", "PMIX_RANK": "2"}, 4),  # srun -n 4 --mpi=pmix
        ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),  # Open MPI mpirun
        ({"PMI_SIZE": "3"}, 3),  # MPICH/Intel MPI Hydra, srun --mpi=pmi2
        ({"OMPI_COMM_WORLD_SIZE": "1", "SLURM_STEP_NUM_TASKS": "4"}, 1),  # closest launcher wins
    ],
)
def test_launch_size(env: dict[str, str], expected: int) -> None:
    assert mock.launch_size(env)[0] == expected


@pytest.mark.mpi
def test_launcher_without_mpi_world_is_refused(tmp_path: Path) -> None:
    """Several tasks reported but one MPI rank (e.g. srun --mpi=none): refuse, don't clobber."""
    pytest.importorskip("mpi4py")
    if shutil.which("mpirun") is None:
        pytest.skip("no MPI library to import mpi4py with (mpirun not installed)")
    out = tmp_path / "out.hdf5"
    done = _run(_args(out), OMPI_COMM_WORLD_SIZE="2")
    assert done.returncode == 1
    assert "error:" in done.stderr and "MPI world has 1 rank" in done.stderr
    assert not out.exists()


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_mpirun_file_is_byte_identical_to_one_rank(tmp_path: Path, ranks: int) -> None:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not found on PATH (install an MPI, e.g. Debian openmpi-bin)")
    pytest.importorskip("mpi4py")
    serial, parallel = tmp_path / "serial.hdf5", tmp_path / f"mpi{ranks}" / "out.hdf5"
    assert mock.main(_args(serial)) == 0
    done = _run(
        _args(parallel),
        launcher=[mpirun, "-n", str(ranks), "--oversubscribe"],
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mock: wrote 10000 galaxies to {parallel} with {ranks} rank(s)"
    assert filecmp.cmp(serial, parallel, shallow=False)
