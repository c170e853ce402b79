"""Confine the calling process with Landlock: what a loaded model's code or ops may read, write and connect to.

A model is code (a Lambda, a TFOpLambda, a graph op that reads or writes files): the processes that load, trace,
convert and run it confine themselves first. After `confine(reads, writes)` the process (its calling thread and
every thread and child it starts later) may read and execute only the Python environment, the shared libraries,
a few system files and `reads`; read and write only `writes`; and (Landlock ABI >= 4) neither connect nor bind any
TCP port; (ABI >= 6) signal no process and reach no abstract unix socket outside its own domain. Landlock cannot be
lifted, only narrowed: trusted models get the same confinement (trust lets code run, not escape).

Where Landlock is missing (not Linux, a kernel before 5.13, the LSM not enabled, a seccomp filter refusing the
calls) nothing is confined and the state says why; a run never fails for lack of it. `EDGEPORT_SANDBOX=off` turns it
off, a diagnostic switch for measuring its cost (benchmarks/run.py), never for production.

Why ctypes and not the PyPI package `landlock` (1.0.0.dev5, read for this module): an alpha release that handles
file-system rights only: no ABI 4 network rules, no ABI 6 scopes, so it could not forbid TCP. Three syscalls
(landlock_create_ruleset 444, landlock_add_rule 445, landlock_restrict_self 446, the same on x86_64 and aarch64)
and two packed structs are less code than wrapping it.

Landlock leaves two ways out: UDP, and connecting to a named unix socket (a path such as /var/run/docker.sock, a
daemon that may do what the model may not). So once Landlock applies, a seccomp-BPF filter makes every `socket` call
fail with EACCES (`socketpair` stays: it reaches no one, and the worker's pipe to its parent exists already) and
`io_uring_setup` too (io_uring opens sockets without the `socket` syscall). It checks the architecture (x86_64 or
aarch64; a syscall of another ABI, int 0x80 or x32, is refused whole) and is installed with the thread-sync flag, so
it binds the process's existing threads as well. On another architecture, or where the kernel refuses it, Landlock
still stands and the state says why there is no filter.

Threads that exist before `confine` stay outside Landlock (it has no thread-sync flag up to ABI 7): call it from the
main thread before anything runs model code. A plain leaf: imports no framework and no other layer.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64 (the generic table) alike
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# File-system rights, and the ABI that introduced each beyond the first.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
# seccomp: the filter's syscall (and the numbers it refuses) per architecture, as the kernel names it in
# seccomp_data.arch: (AUDIT_ARCH, seccomp, socket, io_uring_setup, refuse x32 numbers).
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 317, 41, 425, True), "aarch64": (0xC00000B7, 277, 198, 425, False)}
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_X32_SYSCALL_BIT = 0x40000000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_EACCES = 0x7FFF0000, 0x00050000 | errno.EACCES
_ARCH_OFFSET, _NR_OFFSET = 4, 0  # struct seccomp_data: int nr; __u32 arch; ...
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV  # all a rule on a non-directory may hold
_READ = _EXECUTE | _READ_FILE | _READ_DIR

# What Python, TensorFlow, Keras, tf2onnx, LiteRT and onnxruntime read once imported (found with strace on confined
# runs of every conversion: what they were denied is only onnxruntime's telemetry database in ~/.cache (turned off:
# pipeline.frameworks) and thread names in /proc/self/task/*/comm, none of which changes a result): shared
# libraries, CPU, memory and cgroup facts, the PCI device list (onnxruntime's device discovery warns on stderr
# without it), time zones, randomness; never /etc as a whole, $HOME or /tmp. Of /proc only
# this process's own folder ("/proc/self", resolved when confining) and the machine's facts: another process's
# environ or cmdline (a CI job's secrets) stays unread.
_SYSTEM_READS = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
    "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys",
    "/sys/devices/system/cpu", "/sys/fs/cgroup", "/sys/devices/system/node", "/sys/bus/pci",
    "/etc/ld.so.cache", "/etc/localtime", "/etc/timezone", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group",
    "/etc/os-release", "/dev/urandom", "/dev/random",
)  # fmt: skip
_SYSTEM_WRITES = ("/dev/null",)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("handled_access_fs", "handled_access_net", "scoped")]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


@dataclass(frozen=True)
class Roots:
    """What a confined process may touch beyond its runtime, as plain strings (it crosses to a worker process)."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxState:
    """What confines this process: Landlock's ABI and the roots it allows, or why nothing does (`abi` 0)."""

    abi: int
    reads: int = 0
    writes: int = 0
    no_tcp: bool = False
    scoped: bool = False
    why: str = ""
    no_sockets: bool = False  # the seccomp filter: no `socket` (UDP, unix paths), no io_uring
    sockets_why: str = ""  # why there is no such filter, when Landlock applies without it

    @property
    def confined(self) -> bool:
        return self.abi > 0

    def describe(self) -> str:
        if not self.confined:
            return f"none ({self.why})"
        text = f"landlock ABI {self.abi}: reads {self.reads} roots, writes {self.writes}"
        text += ", no TCP" if self.no_tcp else ", TCP open (ABI < 4)"
        if self.abi >= 6:
            text += ", signals and abstract sockets scoped" if self.scoped else ", abstract sockets scoped"
        return text + (", no new sockets" if self.no_sockets else f", new sockets open ({self.sockets_why})")


_applied: SandboxState | None = None


def applied() -> SandboxState | None:
    """The state `confine` left this process in; None when it was never called here."""
    return _applied


def confined_here() -> bool:
    """Whether this process is confined: it can start no working child (a child's `/proc/self` is outside the
    rules it inherits)."""
    return _applied is not None and _applied.confined


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> tuple[int, str]:
    """The kernel's Landlock ABI version, or 0 and why there is none."""
    if sys.platform != "linux":
        return 0, f"Landlock is Linux only, this is {sys.platform}"
    libc = _libc()
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if version < 0:
        error = ctypes.get_errno()
        reasons = {38: "the kernel has no Landlock (before 5.13)", 95: "Landlock is not enabled (lsm= boot option)"}
        return 0, reasons.get(error, f"landlock_create_ruleset refused: {os.strerror(error)}")
    return int(version), ""


def describe_available() -> str:
    """What `confine` would apply here, without applying it: "landlock ABI 7" or "none (why)"."""
    abi, why = landlock_abi()
    return f"landlock ABI {abi}" if abi else f"none ({why})"


def said(error: BaseException, text: str) -> str:
    """`text` (an error's first line) as a user should read it: a PermissionError named, with the sandbox's part.
    Keras rewrites a layer's error down to its errno ("13"): its type is what is left to say what happened."""
    if not isinstance(error, PermissionError):
        return text
    return (
        f"PermissionError: {text} (the model touched a file the sandbox denies: a model may read only its own files "
        "and write only the run's work folder, trusted or not)"
    )


def existing_root(path: Path) -> Path:
    """A file or folder as it is; a checkpoint prefix (no such file) as the folder its files sit in."""
    return path if path.exists() else path.parent


def runtime_reads() -> list[Path]:
    """What the interpreter and its packages need to go on running: the environment, sys.path, this package."""
    package = Path(__file__).resolve().parents[1]
    roots = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent, package]
    roots += [Path(entry) for entry in sys.path if entry]
    # Keras's settings: read again by a module that imports Keras after confining (a builder's, a custom class's)
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return [*roots, keras_home / "keras.json", *map(Path, _SYSTEM_READS)]


def confine(
    reads: Iterable[Path | str], writes: Iterable[Path | str], *, own: Path | str | None = None, signals: bool = True
) -> SandboxState:
    """Confine this process for good: read `reads` and the runtime's files, read and write `writes`, no TCP.
    `own`: a work folder of this process's, writable, and removable at its end (the one right granted in the folder
    that holds it is removing an empty folder). `signals` False leaves signals unscoped: for a process that must still
    stop children it started before (a confined process may signal only its own domain; such a child is outside)."""
    global _applied
    if os.environ.get("EDGEPORT_SANDBOX", "").lower() == "off":
        _applied = SandboxState(0, why="EDGEPORT_SANDBOX=off, a diagnostic switch")
        return _applied
    abi, why = landlock_abi()
    if abi == 0:
        _applied = SandboxState(0, why=why)
        return _applied
    try:
        everything_read = [*runtime_reads(), *map(Path, reads)]
        everything_written = [*map(Path, _SYSTEM_WRITES), *map(Path, writes), *([Path(own)] if own else [])]
        state = _restrict(abi, (everything_read, everything_written, Path(own).parent if own else None), signals)
    except OSError as error:
        _applied = SandboxState(0, why=f"Landlock refused: {error.strerror or error}")
        return _applied
    why_not = _deny_sockets()  # only over Landlock: alone it would close sockets and leave every file open
    _applied = replace(state, no_sockets=not why_not, sockets_why=why_not)
    return _applied


def _restrict(abi: int, roots: tuple[list[Path], list[Path], Path | None], signals: bool) -> SandboxState:
    """`roots`: read, write, and the folder holding this process's own work folder (None: none)."""
    reads, writes, holder = roots
    handled_fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    attr = _RulesetAttr(handled_fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0, 0)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | (_SCOPE_SIGNAL if signals else 0)
    libc = _libc()
    ruleset = _check(libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0))
    try:
        added_reads = sum(_add(libc, ruleset, root, _READ & handled_fs) for root in _unique(reads))
        added_writes = sum(_add(libc, ruleset, root, handled_fs) for root in _unique(writes))
        if holder is not None:
            _add(libc, ruleset, holder, _REMOVE_DIR)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))  # the kernel's condition for an unprivileged domain
        _check(libc.syscall(_RESTRICT_SELF, ruleset, 0))
    finally:
        os.close(ruleset)
    return SandboxState(abi, added_reads, added_writes, no_tcp=abi >= 4, scoped=abi >= 6 and signals)


def _socket_filter(arch: int, denied: tuple[int, ...], x32: bool) -> list[tuple[int, int, int, int]]:
    """A seccomp-BPF program as (code, jt, jf, k): `denied` syscalls (and, on x86_64, every x32 one) get EACCES, as
    does any syscall made under another architecture (a 64-bit process can still enter the i386 table with int 0x80,
    where socketcall and other numbers live); all else is allowed."""
    checks = ([(_BPF_JGE_K, _X32_SYSCALL_BIT)] if x32 else []) + [(_BPF_JEQ_K, nr) for nr in denied]
    program = [(_BPF_LD_W_ABS, 0, 0, _ARCH_OFFSET), (_BPF_JEQ_K, 0, len(checks) + 2, arch)]  # else: to the EACCES
    program.append((_BPF_LD_W_ABS, 0, 0, _NR_OFFSET))
    for index, (code, nr) in enumerate(checks):
        program.append((code, len(checks) - index, 0, nr))  # a match jumps over the rest and the allow
    return [*program, (_BPF_RET_K, 0, 0, _RET_ALLOW), (_BPF_RET_K, 0, 0, _RET_EACCES)]


def _deny_sockets() -> str:
    """Install the filter on every thread of this process (the thread-sync flag: threads started before `confine`,
    TensorFlow's among them, included); "" when it stands, else why not. A refusal leaves Landlock as it stands."""
    machine = platform.machine().lower()  # the kernel's: a 32-bit interpreter on it would fail the arch check
    if machine not in _SECCOMP_ARCH or ctypes.sizeof(ctypes.c_void_p) != 8:  # ... on every syscall: skip it
        return f"no seccomp filter for a {ctypes.sizeof(ctypes.c_void_p) * 8}-bit {machine or 'unknown'} process"
    arch, seccomp, socket_nr, io_uring_setup, x32 = _SECCOMP_ARCH[machine]
    program = _socket_filter(arch, (socket_nr, io_uring_setup), x32)
    instructions = (_SockFilter * len(program))(*(_SockFilter(*step) for step in program))
    fprog = _SockFprog(len(program), instructions)
    libc = _libc()
    flags = ctypes.c_ulong(_SECCOMP_FILTER_FLAG_TSYNC)
    result = libc.syscall(seccomp, ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER), flags, ctypes.byref(fprog))
    if result > 0:  # TSYNC: the id of a thread that could not take the filter; none of them has it then
        return f"seccomp could not bind thread {result}"
    if result < 0:
        return f"seccomp refused: {os.strerror(ctypes.get_errno())}"
    return ""


def _add(libc: ctypes.CDLL, ruleset: int, root: Path, access: int) -> int:
    """One path-beneath rule; a root that does not exist is skipped (0), a file gets only the rights files take."""
    try:
        fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        if not root.is_dir():
            access &= _FILE_RIGHTS
        rule = _PathBeneathAttr(access, fd)
        _check(libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0))
    finally:
        os.close(fd)
    return 1


def _unique(roots: list[Path]) -> list[Path]:
    return list(dict.fromkeys(Path(os.path.abspath(root)) for root in roots))


def _check(result: int) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result
