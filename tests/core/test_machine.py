"""What bench JSON records about the machine: the CPU's name alone does not say whether it has bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnx.core.machine import CPU_FEATURES, machine_info


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo")
def test_machine_info_names_the_cpu_and_its_vector_features() -> None:
    info = machine_info()
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    assert info["cpu_features"] == [f for f in CPU_FEATURES if f in flags.split(":", 1)[1].split()]
    assert info["cpu"] != "unknown" and info["usable_cores"] >= 1
