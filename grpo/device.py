"""The processes and the device: how many processes run (torchrun, accelerate launch), which one is rank 0,
gathering a value from every rank, and the training precision; and why torch sees no GPU on a machine with
an NVIDIA driver (a driver older than the CUDA torch was built for). Loads torch only inside the functions.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run: torchrun and accelerate launch set WORLD_SIZE; a plain python run is 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that prints the summaries and writes the run's files."""
    return int(os.environ.get("RANK", "0")) == 0


def gather(value) -> list:
    """`value` from every process, in rank order (a one-item list when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def trains_bf16() -> bool:
    """Whether this run trains in bfloat16: on a GPU that supports it (a CPU run trains float32)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


# --- the NVIDIA driver against the CUDA torch was built for --------------------------------------------
# The newest CUDA each Linux driver runs: NVIDIA's CUDA release notes, "CUDA Toolkit and Corresponding
# Driver Versions" (the GA driver of each toolkit), newest first.
DRIVER_CUDA = (
    ("580.65.06", "13.0"), ("575.51.03", "12.9"), ("570.26", "12.8"), ("560.28.03", "12.6"),
    ("555.42.02", "12.5"), ("550.54.14", "12.4"), ("545.23.06", "12.3"), ("535.54.03", "12.2"),
    ("530.30.02", "12.1"), ("525.60.13", "12.0"), ("520.61.05", "11.8"), ("450.80.02", "11.0"),
)
# The oldest driver a torch built for each CUDA major runs on (CUDA's minor-version compatibility: any
# 12.x build on a 525 driver, a 13.x build only on 580 or newer).
DRIVER_FLOOR = {"13": "580.65.06", "12": "525.60.13", "11": "450.80.02"}
PROC_DRIVER_VERSION = "/proc/driver/nvidia/version"  # the kernel module's version, where nvidia-smi is missing
# The way out on an older driver (README, "An older NVIDIA driver"; not run here: those indexes are unreachable).
OLDER_DRIVER_INSTALL = "uv pip install -r requirements.txt --torch-backend=auto"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version ("570.124.06"): from nvidia-smi, else from the kernel module's
    /proc file; None where neither is here (no NVIDIA driver)."""
    import re
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        match = re.search(r"\d+\.\d+(\.\d+)?", out.stdout) if out.returncode == 0 else None
        if match:
            return match.group(0)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open(PROC_DRIVER_VERSION) as f:
            match = re.search(r"Kernel Module\s+(\d+\.\d+(\.\d+)?)", f.read())
        return match.group(1) if match else None
    except OSError:
        return None


def driver_cuda(driver: str) -> str | None:
    """The newest CUDA the driver runs ("12.8" for 570.x), or None for one older than the table."""
    return next((cuda for floor, cuda in DRIVER_CUDA if _version(driver) >= _version(floor)), None)


def gpu_unseen(script: str) -> str | None:
    """Why torch sees no GPU on a machine with an NVIDIA driver, as one line, or None: torch sees a GPU,
    there is no NVIDIA driver (a CPU machine), or CUDA_VISIBLE_DEVICES hides the GPUs on purpose."""
    import torch

    if torch.cuda.is_available():
        return None
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return None
    driver = nvidia_driver()
    if driver is None:
        return None
    runs = driver_cuda(driver)
    built = torch.version.cuda
    cpu_anyway = f"(to run on the CPU anyway: CUDA_VISIBLE_DEVICES= python {script} ...)"
    if built is None:
        return (f"NVIDIA driver {driver} is here, but the installed torch {torch.__version__} is a CPU build; "
                f"install the GPU stack: pip install -r requirements.txt {cpu_anyway}")
    floor = DRIVER_FLOOR.get(built.split(".")[0])
    if floor and _version(driver) < _version(floor):
        return (
            f"the NVIDIA driver here is {driver}, which runs CUDA up to {runs or 'an old release'}, and the "
            f"installed torch {torch.__version__} is built for CUDA {built}, which needs driver {floor} or newer. "
            f"Either update the driver (nvidia-smi shows it), or install the builds of the same versions for "
            f"your driver's CUDA:  {OLDER_DRIVER_INSTALL}  (README: 'An older NVIDIA driver') {cpu_anyway}"
        )
    return (
        f"NVIDIA driver {driver} (CUDA up to {runs}) runs the installed torch {torch.__version__} (CUDA {built}), "
        f"but torch sees no GPU: check that nvidia-smi lists one, CUDA_VISIBLE_DEVICES "
        f"({os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}), and that this user may open /dev/nvidia* "
        f"(in a container: --gpus all) {cpu_anyway}"
    )


# --- a quieter `import unsloth` on a CPU -------------------------------------------------------------------
# Library lines that ask nothing of a CPU user, dropped where the project triggers them (`import unsloth`):
CPU_QUIET = (
    # vLLM is installed (requirements-dev.txt) and needs a GPU; the run's own `generation:` line says so
    ("unsloth.import_fixes", "broken vLLM binary extension"),
    # a deprecation inside torchao's import, for its maintainers
    ("torch.utils._pytree", "register_constant() on Enum"),
    # bitsandbytes' optional 4-bit CPU kernel (AVX512-BF16 CPUs); a CPU run never loads 4-bit
    ("bitsandbytes.backends.cpu.ops", "gemm_4bit_forward from kernels-community"),
)


def quiet_cpu_lines() -> None:
    """Without a GPU, drop the library lines in CPU_QUIET (before the libraries that say them load)."""
    import logging

    import torch

    if torch.cuda.is_available():
        return
    for name, text in CPU_QUIET:
        logging.getLogger(name).addFilter(lambda record, text=text: text not in record.getMessage())


def import_unsloth() -> None:
    """`import unsloth`, first, so it can patch transformers, TRL and PEFT. Without a GPU, the lines in
    CPU_QUIET are dropped and Unsloth's CPU banner ("supported: ... SFTTrainer", as if GRPO were not) is
    said in one line of the project's; on a GPU every line stays."""
    import contextlib
    import io
    import sys

    import torch

    if "unsloth" in sys.modules or torch.cuda.is_available():
        import unsloth  # noqa: F401
        return
    quiet_cpu_lines()
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        import unsloth  # noqa: F401
    for line in said.getvalue().splitlines():
        if "no GPU found, training on CPU" in line:
            line = (f"{line.split(':')[0]} without a GPU: its CPU fallback (stock transformers, PEFT and TRL) runs "
                    f"priming and GRPO here, slowly, {torch.get_num_threads()} threads")
        print(line)
