"""What this CPU is, as far as it changes the numbers a runtime gives: architecture, model, kernel features.

onnxruntime and XNNPACK pick their int8 kernels by instruction set, so the same quantized file can give a
different result on another CPU. A leaf: reads /proc/cpuinfo (or sysctl on macOS), knows nothing else.
"""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

# The flags that select different int8 / float kernels, as /proc/cpuinfo spells them.
X86_FEATURES = (
    "sse4_1",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products into int32, no int16 step
# ARM's names in /proc/cpuinfo → the names people use.
ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16", "bf16": "bf16", "sve": "sve"}
MACOS_FEATURES = {
    "hw.optional.AdvSIMD": "neon",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_BF16": "bf16",
}


@cache
def cpu_info() -> dict[str, Any]:
    """`{architecture, model, features, int8_kernels, int8_may_saturate}` of this machine."""
    architecture = platform.machine().lower() or "unknown"
    model, features = _read_cpu()
    return {
        "architecture": architecture,
        "model": model or platform.processor() or "unknown",
        "features": features,
        **int8_kernels(architecture, features),
    }


def int8_kernels(architecture: str, features: list[str]) -> dict[str, Any]:
    """Which int8 dot product the CPU has, and whether it can saturate.

    x86 without VNNI multiplies u8×s8 pairs with `vpmaddubsw`, which adds two products into int16 and
    saturates there; onnxruntime's quantization docs recommend `reduce_range` for such CPUs.
    """
    if architecture in {"x86_64", "amd64", "i686", "x86"}:
        if any(flag in features for flag in X86_INT8_DOT):
            return {"int8_kernels": "vnni (u8×s8 into int32)", "int8_may_saturate": False}
        if "avx2" in features or "avx512bw" in features:
            return {"int8_kernels": "vpmaddubsw (u8×s8 pairs into int16, saturating)", "int8_may_saturate": True}
        return {"int8_kernels": "sse (no avx2)", "int8_may_saturate": True}
    if architecture in {"aarch64", "arm64"}:
        best = "i8mm" if "i8mm" in features else "dotprod" if "dotprod" in features else "neon"
        return {"int8_kernels": f"{best} (into int32)", "int8_may_saturate": False}
    return {"int8_kernels": "unknown", "int8_may_saturate": None}


def describe_cpu(info: dict[str, Any]) -> str:
    """`AMD EPYC (x86_64: avx2 fma; int8 via vpmaddubsw …)`: one line for reports and logs."""
    features = " ".join(info.get("features") or []) or "no listed features"
    return f"{info.get('model', '?')} ({info.get('architecture', '?')}: {features}; int8 {info.get('int8_kernels')})"


def _read_cpu() -> tuple[str | None, list[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            return _parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        except OSError:
            return None, []
    if platform.system() == "Darwin":
        return _read_sysctl()
    return None, []


def _parse_cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """The first processor's model name and its kernel-relevant flags (x86 `flags`, ARM `Features`)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: they are alike on the machines we run on
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu part")
    if "flags" in fields:
        present = set(fields["flags"].split())
        return model, [flag for flag in X86_FEATURES if flag in present]
    present = set(fields.get("features", "").split())
    return model, [name for flag, name in ARM_FEATURES.items() if flag in present]


def _read_sysctl() -> tuple[str | None, list[str]]:
    def sysctl(name: str) -> str | None:
        try:
            done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    features = [name for key, name in MACOS_FEATURES.items() if sysctl(key) == "1"]
    return sysctl("machdep.cpu.brand_string"), features
