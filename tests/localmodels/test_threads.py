"""How many threads a local model gets by default: one per physical core it may use."""

from __future__ import annotations

from pathlib import Path

from hexahub.localmodels.registry import physical_cores, resolved_threads


def fake_sys(root: Path, topology: dict[int, tuple[int, int]], cpu_max: str | None = None) -> Path:
    """A /sys with CPU `n` on (package, core) `topology[n]`, and a cgroup `cpu.max`."""
    for cpu, (package, core) in topology.items():
        folder = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    if cpu_max is not None:
        (root / "fs" / "cgroup").mkdir(parents=True)
        (root / "fs" / "cgroup" / "cpu.max").write_text(f"{cpu_max}\n")
    return root


def test_hyperthreads_of_one_core_count_once(tmp_path: Path) -> None:
    # 8 logical CPUs: 4 cores with two hyperthreads each.
    root = fake_sys(tmp_path, {cpu: (0, cpu % 4) for cpu in range(8)})
    assert physical_cores(root, set(range(8))) == 4


def test_cores_without_smt_all_count(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: (0, 0), 1: (0, 1)})
    assert physical_cores(root, {0, 1}) == 2


def test_the_same_core_id_on_two_sockets_is_two_cores(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {0: (0, 0), 1: (1, 0)})
    assert physical_cores(root, {0, 1}) == 2


def test_only_the_cpus_the_process_may_use_count(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, {cpu: (0, cpu) for cpu in range(16)})
    assert physical_cores(root, {2, 3, 5}) == 3


def test_a_container_quota_caps_the_count(tmp_path: Path) -> None:
    topology = {cpu: (0, cpu) for cpu in range(16)}
    assert physical_cores(fake_sys(tmp_path / "a", topology, "150000 100000"), set(topology)) == 2
    assert physical_cores(fake_sys(tmp_path / "b", topology, "max 100000"), set(topology)) == 16


def test_without_a_topology_half_the_logical_cpus(tmp_path: Path) -> None:
    assert physical_cores(tmp_path, set(range(6))) == 3
    assert physical_cores(tmp_path, {0}) == 1


def test_a_chosen_thread_count_is_kept() -> None:
    assert resolved_threads(3) == 3
    assert resolved_threads(0) == physical_cores()
