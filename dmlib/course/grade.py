"""Grade students' chapter notebooks by running them and reading their checks (``make grade``).

Usage::

    python -m dmlib.course.grade SUBMISSIONS_DIR [--out DIR] [--timeout SECONDS] [--quick | --full]
        [--memory-mb N] [--disk-mb N] [--nproc N] [--cpu-seconds S] [--max-output-mb N]
        [--same-user]

**Layout.** One folder per student, holding that student's notebooks under the chapter's
file name (the name of the reference chapter in ``chapters/``)::

    SUBMISSIONS_DIR/
        alice/00_setup.ipynb
        alice/03_forward_process.ipynb
        bob/00_setup.ipynb

The folder name is the student's name. Files other than ``*.ipynb`` and hidden folders
(``.ipynb_checkpoints``) are ignored. Notebooks lying directly in ``SUBMISSIONS_DIR`` are an
error (there is no student to credit them to). A chapter submitted by some student but not
by another is reported for the latter as ``missing`` ("not submitted").

**Running.** Each notebook is executed in a fresh kernel (``dmlib-course``) with
``DMLIB_QUICK=1`` (``--full`` turns it off) and a wall-clock limit for the whole notebook
(``--timeout``, default 600 s). A crashing cell does not stop the notebook: later cells still
run. The submitted file is only read; the executed copy is written to
``OUT/executed/<student>/<chapter>.ipynb``. Nothing a notebook does stops the batch;
Ctrl-C does (no reports are written then).

**Sandbox** (``Limits``, ``Sandbox``). Each kernel runs in its own session and process group,
with its own scratch folder as working directory and ``HOME`` (deleted afterwards), and an
environment reduced to an allow-list (``ENV_ALLOW``; none of your other variables, tokens or
keys). Chapters read ``data/`` in place through dmlib (``PYTHONPATH`` points at this
copy of dmlib). In the kernel and every process it starts, ``setrlimit`` caps the address
space (``--memory-mb``, default 8192), the CPU time of each process (``--cpu-seconds``, default
the timeout times the number of CPUs), the size of any one file (``--disk-mb``, default
1024), core dumps (none) and, where the kernel applies it, the number of processes and
threads (``--nproc``, default 256). A watchdog thread checks the sandbox's processes every
0.1 s (0.25 s with a throw-away user; the files every 0.5 s) and kills all of them when
together they exceed ``--nproc`` tasks or ``--memory-mb`` of resident memory, when the
sandbox's files exceed ``--disk-mb`` (or ``MAX_FILES`` files), or 30 s after the timeout.
At the end of every notebook all its processes are killed (background ones too) and its
files removed. The captured output of a notebook is capped (``--max-output-mb``, default
20): after the cap only the check lines are kept. Run as **root** (a container, a VM), the
kernel also runs as a throw-away user id (``SANDBOX_UIDS``), with no capabilities but
``CAP_DAC_READ_SEARCH`` when the course's Python is in a folder other users cannot read:
it can then read files but write only its scratch folder and the world-writable
temporary folders (cleaned after each notebook), the kernel enforces ``--nproc``, and every
process it starts is found and killed by its user id. Run as a normal user (or with
``--same-user``) the kernel runs as you: the limits and the watchdog still hold, but the
code can read and write your files, so grade untrusted work as root in a container (see
``docs/teaching.md``). Root is exempt from ``RLIMIT_NPROC``; in ``--same-user`` mode as
root only the watchdog bounds the processes.

**Checks.** The checks a chapter must report are those whose ``PASS check_xxx`` lines appear
in the stored outputs of the instructor's reference chapter, in order. A student's result
for a check is read from the output of the same (locked) check cell in the submission; lines
starting with ``[`` are the chapter's demonstrations of wrong versions and are ignored.

**Tampering.** The student build (``dmlib.course.tools.student``) stores in each locked check cell
a checksum of the cell (``metadata.nbgrader.checksum``). The grader recomputes it from the
submitted cell and compares it with the stored one and with that of the handed-out cell
(rebuilt from the reference chapter): a locked cell whose code or nbgrader metadata was
edited, whose stored checksum was changed, or which is no longer in the notebook (neither
by its ``grade_id`` nor by its exact code) makes its checks ``tampered``, whatever they
printed. The rest of the notebook is graded as usual. An edited locked cell that holds no
graded check (a demonstration) gets a row of its own (check ``-``, not counted in scores).

**Reference use.** For each exercise the grader parses the student's solution cell (``ast``:
imports, names and attribute chains, resolved through the notebook's ``import`` statements)
and lists the ``dmlib`` names it uses that the reference solution of that exercise does
not use, and anything from ``dmlib.checks``: a solution that calls the library's reference
implementation (``q_sample`` for ``q_sample_mine``) or a check's internals shows up in the
``reference_use`` column of the check(s) after the exercise. It is a note for the teacher,
not a fail; a determined student can hide such a call from a static scan.

**Statuses** (``STATUSES``), one row per (student, chapter, check):

* ``pass``            the check printed ``PASS``;
* ``fail``            the check printed ``FAIL`` with a hint (the message);
* ``not implemented`` the check printed ``NOT IMPLEMENTED YET`` (the stub is still there);
* ``error``           the student's code raised: inside the check ("your function raised
  X"), or the check cell itself raised (exception name and message), or the kernel died
  (out of memory, or stopped by the sandbox for exceeding a limit: the message says which);
* ``tampered``        the locked check cell was edited or removed (see Tampering);
* ``missing``         the check never printed (its cell printed nothing), or the chapter was
  not submitted;
* ``timeout``         the notebook hit the time limit before the check ran;
* ``unreadable``      the submitted file is not a readable notebook (not JSON, ...);
* ``unknown chapter`` the file name is not a chapter of the course (one row, check ``-``).

**Reports** in ``OUT`` (default ``build/grades``), each written atomically: ``grades.csv``
(student, chapter, check, status, message, reference_use), ``summary.csv`` (student, chapter,
passed, total, score in %) and ``summary.md`` (a table per student, with the reference use,
plus totals). Rows with check ``-`` do not count in the scores.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import ctypes
import importlib
import io
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

try:
    import resource
except ImportError:  # not POSIX: no rlimits (the watchdog and the timeout still apply)
    resource = None  # type: ignore[assignment]

from .tools.pairs import KERNEL_NAME
from .tools.student import compute_checksum, studentize

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"
DEFAULT_OUT = Path("build") / "grades"
DEFAULT_TIMEOUT = 600

PASS, FAIL, NOT_IMPLEMENTED, ERROR = "pass", "fail", "not implemented", "error"
MISSING, TIMEOUT, UNREADABLE, UNKNOWN = "missing", "timeout", "unreadable", "unknown chapter"
TAMPERED = "tampered"
STATUSES = (PASS, FAIL, NOT_IMPLEMENTED, ERROR, TAMPERED, MISSING, TIMEOUT, UNREADABLE, UNKNOWN)

_LINE = re.compile(r"^(PASS|FAIL|NOT IMPLEMENTED YET) (check_\w+): ?(.*)$")
_LABEL = {"PASS": PASS, "FAIL": FAIL, "NOT IMPLEMENTED YET": NOT_IMPLEMENTED}
_RAISED = "your function raised "


class SubmissionError(ValueError):
    """The submissions folder is missing, empty or not laid out as ``<student>/<chapter>.ipynb``."""


@dataclass(frozen=True)
class Expected:
    """A check a chapter must report: its name, a unique label, and the cell that calls it."""

    name: str
    label: str
    cell_source: str


@dataclass(frozen=True)
class LockedCell:
    """A locked cell of the handed-out chapter: where it is, its code and checksum, its checks."""

    index: int
    grade_id: str
    source: str
    checksum: str
    labels: tuple[str, ...]  # the expected checks this cell reports (may be empty)


@dataclass(frozen=True)
class Exercise:
    """A solution cell of the reference chapter, the names it defines and the checks after it."""

    index: int
    grade_id: str
    source: str  # the full reference cell (with its solution)
    defines: tuple[str, ...]  # top-level functions and classes it defines
    labels: tuple[str, ...]  # the expected checks of the next locked cell


@dataclass(frozen=True)
class Chapter:
    """What the grader needs of one reference chapter."""

    name: str
    expected: list[Expected]
    locked: list[LockedCell]
    exercises: list[Exercise]


@dataclass
class Row:
    """One line of ``grades.csv``."""

    student: str
    chapter: str
    check: str
    status: str
    message: str = ""
    reference_use: str = ""


@dataclass
class Execution:
    """An executed notebook, and how the run ended."""

    nb: nbformat.NotebookNode
    seconds: float
    stopped_at: int | None = None  # index of the cell running when the run stopped
    stop_status: str | None = None  # TIMEOUT or ERROR (kernel died / could not start)
    stop_message: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. output truncated
    peak: dict[str, float] = field(default_factory=dict)  # what the watchdog saw at most


# ---- the sandbox -----------------------------------------------------------------------------
MB = 1024 * 1024
DEFAULT_MEMORY_MB = 8192
DEFAULT_DISK_MB = 1024
DEFAULT_NPROC = 256
DEFAULT_OUTPUT_MB = 20
MAX_FILES = 20_000  # files and folders a notebook may create (watchdog)
WATCH_INTERVAL = 0.1  # seconds between two watchdog checks (as the same user)
WATCH_INTERVAL_UID = 0.25  # with a throw-away user (the kernel enforces --nproc itself)
DISK_EVERY = 0.5  # seconds between two measures of the files
GRACE = 30.0  # seconds after the timeout before the watchdog kills everything
POLL_SLICE = 1.0  # seconds: the longest single wait for a kernel message (see _sliced)
SANDBOX_UIDS = range(64000, 65000)  # throw-away user ids for kernels (root only)
#: the variables a kernel inherits from the grader's environment (when set); everything
#: else is dropped. HOME and TMPDIR point into the scratch folder; PYTHONPATH, DMLIB_QUICK,
#: DMLIB_CHECKS_STRICT and MPLBACKEND are set by the grader.
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "DMLIB_DATA_DIR",
             "MPLBACKEND", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: cleaned of the sandbox's files
_CAP_DAC_READ_SEARCH = 2


@dataclass(frozen=True)
class Limits:
    """Resource limits of one notebook's sandbox (see the module docstring and ``--help``)."""

    timeout: float = DEFAULT_TIMEOUT  # wall-clock seconds for the whole notebook
    memory_mb: int = DEFAULT_MEMORY_MB  # address space per process; resident memory in all
    disk_mb: int = DEFAULT_DISK_MB  # size of one file; all files of the sandbox together
    nproc: int = DEFAULT_NPROC  # processes and threads of the sandbox
    cpu_seconds: float | None = None  # CPU time of each process (None: timeout x CPUs)
    output_mb: float = DEFAULT_OUTPUT_MB  # captured output per notebook
    same_user: bool = False  # never run the kernel as a throw-away user (root only)

    def __post_init__(self) -> None:
        for name, flag in (("timeout", "--timeout"), ("memory_mb", "--memory-mb"),
                           ("disk_mb", "--disk-mb"), ("nproc", "--nproc"),
                           ("cpu_seconds", "--cpu-seconds"), ("output_mb", "--max-output-mb")):
            v = getattr(self, name)
            if v is None and name == "cpu_seconds":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{flag} ({name}) must be a positive number, got {v!r}")

    @property
    def cpu(self) -> int:
        """CPU seconds per process (RLIMIT_CPU): ``cpu_seconds``, else the timeout times the
        number of CPUs (a process with a thread per CPU may use that much)."""
        if self.cpu_seconds is not None:
            return max(1, int(self.cpu_seconds))
        return max(1, int(self.timeout * (os.cpu_count() or 1)))


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _become(uid: int, keep_read: bool) -> None:
    """In a child process running as root: become ``uid`` (group ``uid``, no other groups),
    with no capability but, if ``keep_read``, CAP_DAC_READ_SEARCH (reading any file), kept
    across ``exec``; and no way back (no_new_privs, empty bounding set)."""
    libc = _libc()
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):  # needs CAP_SETPCAP, which root has
        if not (keep_read and cap == _CAP_DAC_READ_SEARCH):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    if keep_read and libc.prctl(8, 1, 0, 0, 0) != 0:  # PR_SET_KEEPCAPS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if keep_read:
        bit = 1 << _CAP_DAC_READ_SEARCH
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = data[0].inheritable = bit
        if libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        if libc.prctl(47, 2, _CAP_DAC_READ_SEARCH, 0, 0) != 0:  # PR_CAP_AMBIENT_RAISE
            raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_RAISE) failed")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _set_limits(limits: Limits, nproc: int | None) -> None:
    """In the child before ``exec``: apply the rlimits (soft = hard, never above the old hard)."""
    if resource is None:
        return

    def cap(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, limits.memory_mb * MB)
    cap(resource.RLIMIT_FSIZE, limits.disk_mb * MB)
    cap(resource.RLIMIT_CORE, 0)
    soft = limits.cpu  # SIGXCPU at the soft limit, SIGKILL at the hard one
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or hard > soft + 5:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    if nproc is not None:
        cap(resource.RLIMIT_NPROC, nproc)


def _proc_pids() -> list[int]:
    """Every process id in /proc (none without a Linux /proc: the watchdog then sees nothing,
    and only the process group is killed)."""
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 8192)
    except OSError:
        return None
    finally:
        os.close(fd)


def _status(pid: int) -> dict[str, str] | None:
    """/proc/PID/status as a dict (``Uid``, ``State``, ``Threads``, ``VmRSS``, ...)."""
    raw = _read(f"/proc/{pid}/status")
    if raw is None:
        return None
    text = raw.decode("ascii", "replace")
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)


def _field(raw: bytes, name: bytes) -> bytes:
    """The first word of a /proc/PID/status line (``b"Uid"`` -> real uid), fast."""
    i = raw.find(b"\n" + name + b":")
    if i < 0:
        return b""
    end = raw.find(b"\n", i + 1)
    words = raw[i + len(name) + 2: end if end >= 0 else None].split()
    return words[0] if words else b""


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    text = raw.decode("ascii", "replace")
    return text[text.rfind(")") + 2:].split()


def _kill_user(uid: int) -> None:
    """As root: SIGKILL every process of ``uid`` at once (a child becomes ``uid``, kill(-1))."""
    pid = os.fork()
    if pid == 0:  # the child only makes system calls, then leaves without cleanup
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process this user may signal, not itself
        except BaseException:
            code = 1
        os._exit(code)
    os.waitpid(pid, 0)


def _tasks_of_user(uid: int) -> int:
    """Processes plus threads currently running as ``uid`` (what RLIMIT_NPROC counts)."""
    n = 0
    for pid in _proc_pids():
        st = _status(pid)
        if st and st.get("Uid", "").split()[:1] == [str(uid)]:
            n += int(st.get("Threads", "1").strip() or 1)
    return n


_MODE_CACHE: dict[tuple[str, ...], tuple[str, bool, str]] = {}
# can the kernel's Python start, import ipykernel and read dmlib's files (without running
# dmlib: importing it imports torch, seconds on a busy machine)
_PROBE = ("import importlib.util as u, ipykernel, os; s = u.find_spec('dmlib'); "
          "[open(os.path.join(d, f), 'rb').close() for d in s.submodule_search_locations "
          "for f in os.listdir(d) if f.endswith('.py')]")


def sandbox_mode(limits: Limits, kernel_name: str = KERNEL_NAME) -> tuple[str, bool, str]:
    """How kernels will run: ``("uid", keep_read, why)`` or ``("same-user", False, why)``.

    As root (and without ``same_user``) a probe starts the kernel's Python as a throw-away
    user id, first without any capability, then with CAP_DAC_READ_SEARCH (needed when the
    interpreter lies in a folder other users cannot enter, such as ``/root``); the first
    that can import ipykernel and read dmlib's files wins. Cached per kernel and repository.
    """
    if limits.same_user:
        return "same-user", False, "--same-user was given"
    if os.name != "posix" or not sys.platform.startswith("linux"):
        return "same-user", False, "throw-away users need Linux"
    if os.geteuid() != 0:
        return "same-user", False, "not running as root"
    from jupyter_client.kernelspec import KernelSpecManager
    argv0 = KernelSpecManager().get_kernel_spec(kernel_name).argv[0]
    key = (argv0, str(ROOT), kernel_name)
    if key in _MODE_CACHE:
        return _MODE_CACHE[key]
    uid = _free_uid()
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(ROOT), "HOME": "/"}
    result = ("same-user", False, "the kernel's Python could not run as a throw-away user")
    for keep_read in (False, True):
        try:
            p = subprocess.run([argv0, "-c", _PROBE], env=env, cwd="/",
                               preexec_fn=lambda k=keep_read: _become(uid, k),  # noqa: PLW0108
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:  # e.g. cannot execute the Python
            result = ("same-user", False, f"could not run the kernel as a throw-away user: {e}")
            continue
        if p.returncode == 0:
            why = ("throw-away user, reading files through CAP_DAC_READ_SEARCH (the kernel's "
                   "Python is in a folder other users cannot read)" if keep_read
                   else "throw-away user without capabilities")
            result = ("uid", keep_read, why)
            break
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        result = ("same-user", False, f"the kernel's Python failed as a throw-away user: {err[0]}")
    _MODE_CACHE[key] = result
    return result


def _free_uid() -> int:
    """A user id of ``SANDBOX_UIDS`` that no account and no running process uses."""
    import pwd
    busy = set()
    for pid in _proc_pids():
        st = _status(pid)
        if st:
            busy.update(int(x) for x in st.get("Uid", "").split())
    uids = list(SANDBOX_UIDS)
    start = random.randrange(len(uids))
    for uid in uids[start:] + uids[:start]:
        if uid in busy:
            continue
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise RuntimeError(f"no free user id in {SANDBOX_UIDS.start}..{SANDBOX_UIDS.stop - 1}")


class Sandbox:
    """One notebook's sandbox: scratch folder, environment, rlimits, watchdog, clean-up.

    Use as a context manager; ``popen_kwargs()`` gives what the kernel is started with,
    ``watch(pid)`` starts the watchdog once the kernel runs. On exit every process of the
    sandbox is killed and its files are removed. ``reason`` says why the watchdog stopped
    the notebook (empty if it did not).
    """

    def __init__(self, limits: Limits, quick: bool = True, kernel_name: str = KERNEL_NAME):
        self.limits = limits
        self.quick = quick
        self.mode, self.keep_read, self.why = sandbox_mode(limits, kernel_name)
        self.uid: int | None = None
        self.kernel_pid: int | None = None
        self.reason = ""
        self.stop_status = ERROR
        self.peak = {"tasks": 0, "rss_mb": 0.0, "disk_mb": 0.0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0

    # -- set-up
    def __enter__(self) -> "Sandbox":
        self.box = Path(tempfile.mkdtemp(prefix="dmlib-grade-"))
        try:
            os.chmod(self.box, 0o711)  # the kernel may enter (to reach work/), not list or write
            self.work = self.box / "work"
            (self.work / "tmp").mkdir(parents=True)
            #: where jupyter_client writes the kernel's connection file (handed to the user)
            self.connection_file = self.box / "kernel.json"
            if self.mode == "uid":
                self.uid = _free_uid()
                for d in (self.work, self.work / "tmp"):
                    os.chown(d, self.uid, self.uid)
                    os.chmod(d, 0o700)
            self.log_path = self.box / "kernel.log"
            self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed in __exit__)
        except BaseException:
            shutil.rmtree(self.box, ignore_errors=True)
            raise
        self._deadline = time.monotonic() + self.limits.timeout + GRACE
        return self

    def env(self) -> dict[str, str]:
        """The kernel's whole environment: the allow-list plus the grader's own settings."""
        env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        env.update(HOME=str(self.work), TMPDIR=str(self.work / "tmp"), PYTHONPATH=str(ROOT),
                   DMLIB_QUICK="1" if self.quick else "0", DMLIB_CHECKS_STRICT="0",
                   PYTHONDONTWRITEBYTECODE="1")
        return env

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the kernel's ``Popen`` (via jupyter_client's ``start_kernel``)."""
        nproc: int | None = self.limits.nproc
        if self.mode != "uid" and os.geteuid() != 0:  # RLIMIT_NPROC counts all your processes
            nproc = _tasks_of_user(os.geteuid()) + self.limits.nproc
        limits, uid, keep_read = self.limits, self.uid, self.keep_read
        conn = str(self.connection_file)

        def preexec() -> None:  # runs in the child, after setsid, before exec
            _set_limits(limits, nproc)
            if uid is not None:
                os.chown(conn, uid, uid)  # written 0600 by the grader: the kernel must read it
                _become(uid, keep_read)

        return {"env": self.env(), "cwd": str(self.work), "preexec_fn": preexec,
                "stdout": self.log, "stderr": subprocess.STDOUT}

    # -- the watchdog
    def members(self) -> list[tuple[int, int, int]]:
        """(pid, tasks, resident bytes) of every live process of the sandbox."""
        out = []
        page = os.sysconf("SC_PAGE_SIZE")
        uid = str(self.uid).encode() if self.uid is not None else None
        for pid in _proc_pids():
            if uid is not None:  # the real uid, from status (a non-dumpable process's
                raw = _read(f"/proc/{pid}/status")  # /proc/PID belongs to root)
                if not raw or _field(raw, b"Uid") != uid or _field(raw, b"State") in (b"Z", b"X"):
                    continue
                rss = int(_field(raw, b"VmRSS") or 0) * 1024
                out.append((pid, int(_field(raw, b"Threads") or 1), rss))
            elif self.kernel_pid is not None:
                f = _stat(pid)
                if not f or f[0] in ("Z", "X"):
                    continue
                if self.kernel_pid in (int(f[2]), int(f[3])):  # its process group or session
                    out.append((pid, int(f[17]), int(f[21]) * page))
        return out

    def usage(self) -> tuple[int, int]:
        """(bytes on disk, number of entries) of the sandbox's files, stopping early past the
        limits: the scratch folder, and (throw-away user) its entries in the shared tmp folders."""
        roots = [self.work]
        if self.uid is not None:
            for d in _SHARED_TMP:
                try:
                    roots += [Path(e.path) for e in os.scandir(d)
                              if e.stat(follow_symlinks=False).st_uid == self.uid]
                except OSError:
                    pass
        total = n = 0
        limit = self.limits.disk_mb * MB
        for root in roots:
            stack = [str(root)]
            while stack and total <= limit and n <= MAX_FILES:
                p = stack.pop()
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                n += 1
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    try:
                        stack += [e.path for e in os.scandir(p)]
                    except OSError:
                        pass
        return total, n

    def check(self, files: bool = True) -> str:
        """One watchdog check (the files too if ``files``): why to stop the notebook, or ``""``."""
        lim = self.limits
        if time.monotonic() > self._deadline:
            self.stop_status = TIMEOUT
            return f"still running {GRACE:g} s after the timeout of {lim.timeout:g} s"
        procs = self.members()
        tasks, rss = sum(t for _, t, _ in procs), sum(r for *_, r in procs)
        self.peak["tasks"] = max(self.peak["tasks"], tasks)
        self.peak["rss_mb"] = max(self.peak["rss_mb"], rss / MB)
        if tasks > lim.nproc:
            return f"{tasks} processes and threads (limit {lim.nproc}, --nproc)"
        if rss > lim.memory_mb * MB:
            return (f"{rss / MB:.0f} MB of memory in {len(procs)} process(es) "
                    f"(limit {lim.memory_mb} MB, --memory-mb)")
        if files:
            used, n = self.usage()
            self.peak["disk_mb"] = max(self.peak["disk_mb"], used / MB)
            if used > lim.disk_mb * MB:
                return f"over {lim.disk_mb} MB of files (limit {lim.disk_mb} MB, --disk-mb)"
            if n > MAX_FILES:
                return f"over {MAX_FILES} files and folders (MAX_FILES)"
        return ""

    def watch(self, kernel_pid: int) -> None:
        """Start the watchdog thread for the kernel ``kernel_pid``."""
        self.kernel_pid = kernel_pid

        interval = WATCH_INTERVAL_UID if self.uid is not None else WATCH_INTERVAL
        every = max(1, round(DISK_EVERY / interval))

        def loop() -> None:
            tick = 0
            while not self._stop.wait(interval):
                reason = self.check(tick % every == 0)
                tick += 1
                if reason:
                    self.reason = reason
                    self.kill_all()
                    return

        self._thread = threading.Thread(target=loop, name="dmlib-grade-watchdog", daemon=True)
        self._thread.start()

    def kill_all(self) -> int:
        """SIGKILL every process of the sandbox until none is left; return how many were seen.

        With a throw-away user a child process becomes that user and calls ``kill(-1)``,
        which reaches every process of the user (whatever its session, even non-dumpable
        ones); otherwise the kernel's process group and session are killed.
        """
        seen = 0
        if self.kernel_pid is not None:
            try:
                os.killpg(self.kernel_pid, signal.SIGKILL)
            except OSError:
                pass
        for _ in range(200):
            procs = self.members()
            if not procs:
                break
            seen += len(procs)
            if self.uid is not None:
                _kill_user(self.uid)
            for pid, *_ in procs:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
        return seen

    def kernel_log(self, chars: int = 400) -> str:
        """The end of what the kernel process wrote to its stdout and stderr."""
        try:
            self.log.flush()
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - chars))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.kill_all()
        self.log.close()
        if self.uid is not None:  # what the throw-away user left in the shared tmp folders
            for d in _SHARED_TMP:
                try:
                    entries = [e for e in os.scandir(d)
                               if e.stat(follow_symlinks=False).st_uid == self.uid]
                except OSError:
                    continue
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            shutil.rmtree(e.path, ignore_errors=True)
                        else:
                            os.unlink(e.path)
                    except OSError:
                        pass
        shutil.rmtree(self.box, ignore_errors=True)


# ---- what to expect ------------------------------------------------------------------------
def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def check_lines(cell: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    """The check lines a cell printed, as (label, check name, message); ``[`` demo lines skipped."""
    out, last = [], None
    for line in _stdout(cell).splitlines():
        if last is not None and line.startswith("    ") and line.strip():
            if last >= 0:  # a wrapped check line continues (dmlib.course.checks._core.report_line)
                label, name, msg = out[last]
                out[last] = (label, name, f"{msg} {line.strip()}".strip())
            continue
        m = _LINE.match(line.strip())
        last = None
        if m and not line.lstrip().startswith("["):
            out.append((m.group(1), m.group(2), m.group(3).strip()))
            last = len(out) - 1
        elif m:
            last = -1  # a demo line's continuation is skipped with it
    return out


def expected_checks(reference: Path) -> list[Expected]:
    """The checks of a reference chapter: its ``PASS check_xxx`` output lines, in order."""
    nb = nbformat.read(reference, as_version=4)
    found: list[Expected] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for label, name, _ in check_lines(cell):
            if label == "PASS":
                n = sum(e.name == name for e in found)
                found.append(Expected(name, name if n == 0 else f"{name}#{n + 1}",
                                      cell.source.strip()))
    return found


def reference_chapters(folder: Path = CHAPTERS) -> dict[str, list[Expected]]:
    """Every chapter in ``folder`` (by file stem) with the checks it must report."""
    return {p.stem: expected_checks(p) for p in sorted(Path(folder).glob("*.ipynb"))}


def _defines(source: str) -> tuple[str, ...]:
    tree = _parse(source)
    if tree is None:
        return ()
    return tuple(n.name for n in tree.body
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def load_chapter(reference: Path) -> Chapter:
    """A reference chapter's expected checks, and its locked cells and exercises as handed
    out (the student build of ``reference``, so grade ids and checksums are those students got)."""
    reference = Path(reference)
    expected = expected_checks(reference)
    nb = nbformat.read(reference, as_version=4)
    student, _ = studentize(nb, reference.stem)
    by_source: dict[str, list[str]] = {}
    for e in expected:
        by_source.setdefault(e.cell_source, []).append(e.label)
    locked, exercises = [], []
    for i, (ref_cell, cell) in enumerate(zip(nb.cells, student.cells)):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked"):
            locked.append(LockedCell(i, meta["grade_id"], cell.source, meta["checksum"],
                                     tuple(by_source.get(cell.source.strip(), ()))))
        elif meta.get("solution"):
            exercises.append(Exercise(i, meta["grade_id"], ref_cell.source,
                                      _defines(ref_cell.source), ()))
    exercises = [Exercise(x.index, x.grade_id, x.source, x.defines,
                          next((lc.labels for lc in locked
                                if lc.index > x.index and lc.labels), ()))
                 for x in exercises]
    return Chapter(reference.stem, expected, locked, exercises)


# ---- tampering -------------------------------------------------------------------------------
def tampering(nb: nbformat.NotebookNode, locked: list[LockedCell]) -> dict[str, str]:
    """grade_id -> what was done, for each locked cell of ``locked`` that the submitted ``nb``
    no longer holds as handed out (see the module docstring); untouched cells are absent."""
    by_id: dict[str, tuple[int, nbformat.NotebookNode]] = {}
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            by_id.setdefault(meta["grade_id"], (i, cell))
    sources = {c.get("source", "") for c in nb.cells if c.get("cell_type") == "code"}
    found: dict[str, str] = {}
    for lc in locked:
        where = f"the locked check cell {lc.grade_id}"
        hit = by_id.get(lc.grade_id)
        if hit is None:
            if lc.source not in sources:
                found[lc.grade_id] = (f"{where} is not in the notebook (deleted, or replaced by a "
                                      "cell with other code)")
            continue
        i, cell = hit
        try:
            now = compute_checksum(cell)
        except ValueError:
            now = ""
        stored = cell.metadata["nbgrader"].get("checksum")
        if cell.get("source", "") != lc.source or cell.get("cell_type") != "code":
            what = "its code was edited" if cell.get("cell_type") == "code" else \
                f"it was turned into a {cell.get('cell_type')} cell"
        elif now != lc.checksum:
            what = "its nbgrader metadata was edited"
        elif stored is not None and stored != now:
            what = "its stored checksum was changed"
        else:
            continue
        found[lc.grade_id] = f"{where} (cell {i}) was tampered with: {what}"
    return found


# ---- reference use ---------------------------------------------------------------------------
def _parse(source: str) -> ast.Module | None:
    """The ``ast`` of a cell, IPython magics and shell lines (``%``, ``!``) blanked."""
    lines = [("" if ln.lstrip().startswith(("%", "!")) else ln) for ln in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def _module_names(module: str) -> list[str]:
    try:
        m = importlib.import_module(module)
    except Exception:  # a broken or unknown module: nothing to resolve
        return []
    names = getattr(m, "__all__", None)
    return list(names) if names else [n for n in vars(m) if not n.startswith("_")]


def _import_bindings(tree: ast.AST) -> dict[str, str]:
    """local name -> dmlib qualified name, for the ``import`` statements in ``tree``."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for al in node.names:
                if al.name == "dmlib" or al.name.startswith("dmlib."):
                    if al.asname:
                        out[al.asname] = al.name
                    else:
                        out["dmlib"] = "dmlib"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                (node.module == "dmlib" or node.module.startswith("dmlib.")):
            for al in node.names:
                if al.name == "*":
                    out.update({n: f"{node.module}.{n}" for n in _module_names(node.module)})
                else:
                    out[al.asname or al.name] = f"{node.module}.{al.name}"
    return out


def notebook_bindings(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The dmlib names bound by the ``import`` statements of all code cells of ``nb``."""
    out: dict[str, str] = {}
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            tree = _parse(cell.get("source", ""))
            if tree is not None:
                out.update(_import_bindings(tree))
    return out


def dmlib_names(source: str, bindings: dict[str, str]) -> set[str]:  # long: one AST walk; its cases read best together
    """The dmlib names a cell's code uses: modules and names it imports, names bound to dmlib
    objects (by ``bindings`` or the cell's own imports) and their attribute chains
    (``checks.check_snr`` -> ``dmlib.checks.check_snr``), ``getattr(module, "name")`` and
    ``import_module("dmlib...")``/``__import__("dmlib...")`` with a literal name."""
    tree = _parse(source)
    if tree is None:
        return set()
    local = _import_bindings(tree)
    assigned = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            assigned.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            assigned.add(node.name)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
    names = {k: v for k, v in bindings.items() if k not in assigned}
    names.update(local)
    found: set[str] = set()
    for node in ast.walk(tree):  # what the cell imports
        if isinstance(node, ast.Import):
            found.update(al.name for al in node.names if al.name.split(".")[0] == "dmlib")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "dmlib":
            found.update(f"{node.module}.{al.name}" if al.name != "*" else node.module
                         for al in node.names)

    def qualify(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    class Visitor(ast.NodeVisitor):
        def visit_Attribute(self, node: ast.Attribute) -> None:
            q = qualify(node)
            if q:
                found.add(q)
            else:
                self.generic_visit(node)

        def visit_Name(self, node: ast.Name) -> None:
            q = qualify(node)
            if q and isinstance(node.ctx, ast.Load):
                found.add(q)

        def visit_Call(self, node: ast.Call) -> None:
            fn = node.func
            fname = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(
                fn, ast.Attribute) else ""
            args = node.args
            if fname in ("import_module", "__import__") and args and \
                    isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) and \
                    args[0].value.split(".")[0] == "dmlib":
                found.add(args[0].value)
            elif fname == "getattr" and len(args) >= 2 and isinstance(args[1], ast.Constant) \
                    and isinstance(args[1].value, str):
                base = qualify(args[0])
                if base:
                    found.add(f"{base}.{args[1].value}")
            self.generic_visit(node)

    Visitor().visit(tree)
    return {q for q in found if q != "dmlib"}


def _solution_cell(nb: nbformat.NotebookNode, ex: Exercise) -> nbformat.NotebookNode | None:
    """The submitted cell of exercise ``ex``: by its grade_id, else the last code cell that
    defines the same functions (a notebook without nbgrader metadata)."""
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and meta.get("grade_id") == ex.grade_id:
            return cell if cell.get("cell_type") == "code" else None
    if not ex.defines:
        return None
    hits = [c for c in nb.cells if c.get("cell_type") == "code"
            and set(ex.defines) <= set(_defines(c.get("source", "")))]
    return hits[-1] if hits else None


def reference_use(nb: nbformat.NotebookNode, exercises: list[Exercise]) -> dict[str, list[str]]:
    """check label -> dmlib names the student's solution of the exercise before that check
    uses and the reference solution does not (anything from ``dmlib.checks`` always)."""
    bindings = notebook_bindings(nb)
    out: dict[str, list[str]] = {}
    for ex in exercises:
        cell = _solution_cell(nb, ex)
        if cell is None:
            continue
        allowed = dmlib_names(ex.source, bindings)
        used = sorted(q for q in dmlib_names(cell.get("source", ""), bindings)
                      if q.startswith(("dmlib.checks", "dmlib.course")) or q not in allowed)
        if used:
            for label in ex.labels:
                out.setdefault(label, [])
                out[label] += [q for q in used if q not in out[label]]
    return out


# ---- finding the submissions -----------------------------------------------------------------
def discover(submissions: Path) -> dict[str, dict[str, Path]]:
    """Map student -> chapter stem -> notebook path; raise ``SubmissionError`` on a bad layout."""
    root = Path(submissions)
    layout = f"expected {root}/<student>/<chapter>.ipynb, one folder per student"
    if not root.exists():
        raise SubmissionError(f"submissions folder {root} does not exist ({layout})")
    if not root.is_dir():
        raise SubmissionError(f"{root} is not a folder ({layout})")
    loose = sorted(p.name for p in root.glob("*.ipynb"))
    if loose:
        names = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        raise SubmissionError(f"{len(loose)} notebook(s) lie directly in {root} ({names}): "
                              f"{layout}; move each into its student's folder")
    students = {d.name: {p.stem: p for p in sorted(d.glob("*.ipynb")) if p.is_file()}
                for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not any(students.values()):
        raise SubmissionError(f"no notebooks found in {root} ({layout})")
    return students


# ---- running one notebook --------------------------------------------------------------------
def _out_size(out: nbformat.NotebookNode) -> int:
    if out.get("output_type") == "stream":
        return len(out.get("text", ""))
    if out.get("output_type") == "error":
        return len(out.get("evalue", "")) + sum(len(t) for t in out.get("traceback", []))
    return sum(len(v) if isinstance(v, str) else len(str(v))
               for v in out.get("data", {}).values())


def _sliced(get_msg: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a channel's async ``get_msg(timeout)`` so that it polls in slices of at most
    ``POLL_SLICE`` seconds: a zmq wake-up can be missed (the socket's edge-triggered file
    descriptor), and one long poll then waits out the whole cell timeout although the
    kernel's reply sits in the queue (seen with widget cells; jupyter/nbclient#312)."""
    from queue import Empty

    async def sliced(timeout: float | None = None) -> Any:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            step = POLL_SLICE if end is None else max(0.0, min(POLL_SLICE, end - time.monotonic()))
            try:
                return await get_msg(timeout=step)
            except Empty:
                if end is not None and time.monotonic() >= end:
                    raise

    return sliced


def _client_class() -> type:  # long: a class built lazily (nbclient is imported on first use)
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """A NotebookClient that starts its kernel in a ``Sandbox`` and caps the output kept:
        past ``cap`` characters only check lines (and short error records) are kept."""

        sandbox: Sandbox
        cap: int
        used: int = 0
        kept_lines: int = 0
        truncated: set

        def create_kernel_manager(self) -> Any:
            km = super().create_kernel_manager()
            km.connection_file = str(self.sandbox.connection_file)
            return km

        async def async_start_new_kernel_client(self) -> Any:
            kc = await super().async_start_new_kernel_client()
            for channel in (kc.shell_channel, kc.iopub_channel):
                channel.get_msg = _sliced(channel.get_msg)
            return kc

        async def async_start_new_kernel(self, **kwargs: Any) -> None:
            kwargs.update(self.sandbox.popen_kwargs())
            await super().async_start_new_kernel(**kwargs)
            prov = getattr(self.km, "provisioner", None) if self.km is not None else None
            self.process = getattr(prov, "process", None)
            pid = getattr(prov, "pid", None)
            if pid is not None:
                self.sandbox.watch(int(pid))

        def output(self, outs: list, msg: dict, display_id: str | None,
                   cell_index: int) -> nbformat.NotebookNode | None:
            kind, content = msg.get("msg_type"), msg.get("content", {})
            room = self.cap - self.used
            if kind == "stream" and isinstance(content.get("text"), str):
                text = content["text"]
                if len(text) > room:  # keep what fits, then only the check lines
                    keep, n = [], 0
                    for ln in text.splitlines(True):
                        if n + len(ln) <= room:
                            keep.append(ln)
                            n += len(ln)
                        elif _LINE.match(ln.strip()) and self.kept_lines < 1000:
                            keep.append(ln[:2000])
                            self.kept_lines += 1
                    self._mark(outs, cell_index)
                    self.used = self.cap
                    if not keep:
                        return None
                    content["text"] = "".join(keep)
                else:
                    self.used += len(text)
                return super().output(outs, msg, display_id, cell_index)
            if kind == "error" and isinstance(content, dict):
                size = len(str(content.get("evalue", ""))) + sum(
                    len(str(t)) for t in content.get("traceback", []))
                if size > room:  # a short record, so that results() still sees the error
                    content["traceback"] = []
                    content["evalue"] = str(content.get("evalue", ""))[:2000]
                    self._mark(outs, cell_index)
                self.used += min(size, max(room, 0))
                return super().output(outs, msg, display_id, cell_index)
            out = super().output(outs, msg, display_id, cell_index) if room > 0 else None
            if out is not None:
                size = _out_size(out)
                if size > room and not display_id and out in outs:
                    outs.remove(out)
                    self._mark(outs, cell_index)
                    return None
                self.used += size
            elif room <= 0:
                self._mark(outs, cell_index)
            return out

        def _mark(self, outs: list, cell_index: int) -> None:
            if cell_index not in self.truncated:
                self.truncated.add(cell_index)
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"[dmlib.course.grade: output past the cap of {self.cap / MB:g} MB dropped; "
                         "check lines kept]\n"))

    return CappedClient


_DEATHS = {int(signal.SIGXCPU): "CPU time limit, --cpu-seconds",
           int(signal.SIGXFSZ): "file size limit, --disk-mb",
           int(signal.SIGKILL): "killed: out of memory, or the code killed it",
           int(signal.SIGSEGV): "crashed: segmentation fault"}


def execute(nb: nbformat.NotebookNode, timeout: float | None = None, quick: bool = True,
            kernel_name: str = KERNEL_NAME, limits: Limits | None = None) -> Execution:  # long: start, run, stop and read back one sandboxed kernel, in order
    """Run ``nb`` (in place, outputs cleared first) in a fresh, sandboxed kernel.

    ``limits`` (default ``Limits(timeout)``) bounds the run; see ``Sandbox``. Errors in cells
    do not stop the run. A run that hits the time limit, whose kernel dies or that the
    sandbox stops stops there: ``Execution.stopped_at`` names the cell, ``stop_status`` says why.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if limits is None:
        limits = Limits(timeout=timeout if timeout is not None else DEFAULT_TIMEOUT)
    elif timeout is not None and timeout != limits.timeout:
        raise ValueError(f"timeout={timeout} contradicts limits.timeout={limits.timeout}")
    timeout = limits.timeout
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    current = [0]

    def on_cell_execute(**kw: object) -> None:
        current[0] = int(kw["cell_index"])  # type: ignore[call-overload]

    deadline = time.monotonic() + timeout
    run = Execution(nb, 0.0)
    t0 = time.perf_counter()
    with Sandbox(limits, quick=quick, kernel_name=kernel_name) as box:
        client = _client_class()(
            nb, kernel_name=kernel_name, allow_errors=True, record_timing=False,
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic() + 0.999)),
            on_cell_execute=on_cell_execute)
        client.sandbox, client.cap, client.truncated = box, int(limits.output_mb * MB), set()
        try:
            client.execute()
        except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C while starting, ...
            raise KeyboardInterrupt from None
        except CellTimeoutError:
            run.stopped_at, run.stop_status = current[0], TIMEOUT
            run.stop_message = f"timeout after {timeout:g} s (cell {current[0]} was still running)"
        except DeadKernelError:
            run.stopped_at, run.stop_status = current[0], ERROR
            proc = getattr(client, "process", None)
            code = proc.poll() if proc is not None else None
            why = _DEATHS.get(-code, f"signal {-code}") if code is not None and code < 0 else \
                "out of memory, or the code ended the process"
            run.stop_message = (f"the kernel died in cell {current[0]} ({why}); "
                                "later cells did not run")
        except Exception as e:  # kernel failed to start, a protocol error, ...: report, go on
            run.stopped_at, run.stop_status = current[0], ERROR
            run.stop_message = f"the notebook could not be run: {type(e).__name__}: {e}"
            tail = box.kernel_log(300)
            if tail:
                run.stop_message += f" (kernel output: ...{tail[-300:]})"
        if box.reason:  # the watchdog killed the kernel: say why
            run.stopped_at = current[0] if run.stopped_at is None else run.stopped_at
            run.stop_status = box.stop_status
            run.stop_message = (f"the sandbox stopped the notebook in cell {run.stopped_at}: "
                                f"{box.reason}; later cells did not run")
        run.peak = dict(box.peak)
        if getattr(client, "_async_cleanup_kernel_future", None) is not None:
            # nbclient took a SIGINT/SIGTERM (Ctrl-C) and shut the kernel down: stop the batch
            raise KeyboardInterrupt
        if client.truncated:
            run.notes.append(f"output past {limits.output_mb:g} MB dropped (cells "
                             f"{', '.join(map(str, sorted(client.truncated)))})")
    run.seconds = time.perf_counter() - t0
    return run


def _first_error(nb: nbformat.NotebookNode, before: int) -> str:
    for i, cell in enumerate(nb.cells[:before]):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                return f"cell {i} raised {o.get('ename')}: {o.get('evalue')}"
    return ""


def results(run: Execution, expected: list[Expected]) -> list[tuple[str, str, str]]:
    """(check label, status, message) for each expected check, read from the executed notebook."""
    cells = run.nb.cells
    out = []
    start = 0
    used_lines: set[tuple[int, int]] = set()
    for exp in expected:
        idx = next((i for i in range(start, len(cells)) if cells[i].cell_type == "code"
                    and cells[i].source.strip() == exp.cell_source), None)
        if idx is None:  # the check cell was edited or moved: take the first unused line
            idx = next((i for i in range(len(cells)) if cells[i].cell_type == "code"
                        and cells[i].source.strip() == exp.cell_source), None)
        else:
            start = idx + 1
        status, message = MISSING, ""
        candidates = [idx] if idx is not None else range(len(cells))
        hit = next(((i, j, ln) for i in candidates
                    for j, ln in enumerate(check_lines(cells[i]))
                    if ln[1] == exp.name and (i, j) not in used_lines), None)
        if hit is not None:
            i, j, (label, _, message) = hit
            used_lines.add((i, j))
            status = _LABEL[label]
            if status == FAIL and message.startswith(_RAISED):
                status = ERROR
        elif idx is None:
            message = (f"the check cell calling {exp.name} is not in the notebook and "
                       f"{exp.name} printed no result (was the cell edited or deleted?)")
        elif run.stopped_at is not None and idx >= run.stopped_at:
            status, message = run.stop_status or ERROR, run.stop_message
        else:
            err = next((o for o in cells[idx].get("outputs", [])
                        if o.get("output_type") == "error"), None)
            if err is not None:
                status, message = ERROR, f"{err.get('ename')}: {err.get('evalue')}"
                earlier = _first_error(run.nb, idx)
                if earlier:
                    message += f" (first error: {earlier})"
            else:
                message = f"the check cell (cell {idx}) ran but printed no result"
        out.append((exp.label, status, message))
    return out


def grade_notebook(path: Path, chapter: Chapter, limits: Limits,
                   quick: bool = True) -> tuple[list[tuple[str, str, str, str]], Execution | None]:
    """Grade one submitted notebook (read only) of ``chapter`` in a sandbox with ``limits``.

    Returns (check label, status, message, reference use) per expected check, plus one row
    (label ``-``) per tampered locked cell that holds no expected check, and the run.
    """
    expected = chapter.expected
    try:
        nb = nbformat.reads(Path(path).read_bytes().decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as e:
        msg = f"unreadable notebook: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return [(exp.label, UNREADABLE, msg, "") for exp in expected], None
    tampered = tampering(nb, chapter.locked)
    try:
        use = reference_use(nb, chapter.exercises)
    except Exception as e:  # RecursionError on absurd code, ...: a note, not a crash
        use = {x: [f"(could not be analysed: {type(e).__name__})"] for x in
               (lbl for ex in chapter.exercises for lbl in ex.labels)}
    run = execute(nb, quick=quick, limits=limits)
    res = [(label, status, message, "; ".join(use.get(label, [])))
           for label, status, message in results(run, expected)]
    for lc in chapter.locked:
        if lc.grade_id not in tampered:
            continue
        if not lc.labels:
            res.append(("-", TAMPERED, tampered[lc.grade_id], ""))
            continue
        for k, (label, status, message, ref) in enumerate(res):
            if label in lc.labels:
                printed = f"{status}: {message}" if message else status
                res[k] = (label, TAMPERED,
                          f"{tampered[lc.grade_id]} (the check reported {printed})", ref)
    return res, run


# ---- reports -------------------------------------------------------------------------------------
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def summarize(rows: list[Row]) -> list[tuple[str, str, int, int]]:
    """(student, chapter, passed, total) in the order the rows came; rows with check ``-``
    (unknown chapters, tampered demonstration cells) do not count."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        a = acc.setdefault((r.student, r.chapter), [0, 0])
        if r.status != UNKNOWN and r.check != "-":
            a[0] += r.status == PASS
            a[1] += 1
    return [(s, c, p, t) for (s, c), (p, t) in acc.items()]


def _pct(p: int, t: int) -> str:
    return f"{100 * p / t:.1f}" if t else "0.0"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_reports(rows: list[Row], out: Path) -> dict[str, Path]:
    """Write grades.csv, summary.csv and summary.md into ``out``; return their paths."""
    out = Path(out)
    summary = summarize(rows)
    paths = {"grades": out / "grades.csv", "summary": out / "summary.csv",
             "markdown": out / "summary.md"}
    _write_atomic(paths["grades"], _csv(
        ["student", "chapter", "check", "status", "message", "reference_use"],
        [[r.student, r.chapter, r.check, r.status, r.message, r.reference_use] for r in rows]))
    _write_atomic(paths["summary"], _csv(["student", "chapter", "passed", "total", "score"],
                                         [[s, c, p, t, _pct(p, t)] for s, c, p, t in summary]))
    md = ["# Grades", ""]
    for student in dict.fromkeys(s for s, *_ in summary):
        md += [f"## {student}", "", "| chapter | check | status | message | reference use |",
               "|---|---|---|---|---|"]
        md += [f"| {r.chapter} | {r.check} | {r.status} | {_md_cell(r.message)} | "
               f"{_md_cell(r.reference_use)} |" for r in rows if r.student == student]
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        md += ["", "| chapter | passed | total | score % |", "|---|---:|---:|---:|"]
        md += [f"| {c} | {pc} | {tc} | {_pct(pc, tc)} |" for _, c, pc, tc in mine]
        md += [f"| **total** | **{p}** | **{t}** | **{_pct(p, t)}** |", ""]
    md += ["## Totals", "", "| student | passed | total | score % |", "|---|---:|---:|---:|"]
    for student in dict.fromkeys(s for s, *_ in summary):
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        md.append(f"| {student} | {p} | {t} | {_pct(p, t)} |")
    flagged = [r for r in rows if r.status == TAMPERED or r.reference_use]
    if flagged:
        md += ["", "## To look at", "",
               "Tampered check cells, and solutions that use dmlib's reference or the checks' "
               "internals (not a fail: the teacher decides).", "",
               "| student | chapter | check | tampered | reference use |", "|---|---|---|---|---|"]
        md += [f"| {r.student} | {r.chapter} | {r.check} | "
               f"{_md_cell(r.message) if r.status == TAMPERED else ''} | "
               f"{_md_cell(r.reference_use)} |" for r in flagged]
    _write_atomic(paths["markdown"], "\n".join(md) + "\n")
    return paths


# ---- the batch -----------------------------------------------------------------------------------
def grade(submissions: Path, out: Path = DEFAULT_OUT, timeout: float = DEFAULT_TIMEOUT,
          quick: bool = True, chapters: Path = CHAPTERS, log=sys.stderr,
          limits: Limits | None = None) -> list[Row]:  # long: the batch loop and its reports, in order
    """Grade every ``submissions/<student>/<chapter>.ipynb``; write executed copies and reports.

    ``limits`` (default ``Limits(timeout)``) are the sandbox's; its ``timeout`` wins.
    """
    limits = limits if limits is not None else Limits(timeout=timeout)
    students = discover(submissions)
    reference = {p.stem: load_chapter(p) for p in sorted(Path(chapters).glob("*.ipynb"))}
    known = ", ".join(reference) or "(none)"
    assigned = [c for c in reference if any(c in nbs for nbs in students.values())]
    mode, _, why = sandbox_mode(limits)
    print(f"sandbox: {why}; limits: timeout {limits.timeout:g} s, {limits.memory_mb} MB memory, "
          f"{limits.disk_mb} MB files, {limits.nproc} tasks, {limits.cpu} CPU s, "
          f"{limits.output_mb:g} MB output", file=log)
    if mode != "uid":
        print("sandbox: the kernels run as this user and can read and write its files; grade "
              "untrusted notebooks as root in a container (see docs/teaching.md)", file=log)
    rows: list[Row] = []
    out = Path(out)
    for student, notebooks in students.items():
        for chapter, path in notebooks.items():
            if chapter not in reference:
                rows.append(Row(student, chapter, "-", UNKNOWN,
                                f"{path.name} is not a chapter of the course; known chapters: "
                                f"{known} (rename the file to its chapter's name)"))
                print(f"{student}/{path.name}: unknown chapter", file=log)
                continue
            ch = reference[chapter]
            try:
                res, run = grade_notebook(path, ch, limits, quick)
            except Exception as e:  # a bug or an odd notebook must not stop the batch
                res, run = [(x.label, ERROR, f"the grader could not grade this notebook: "
                             f"{type(e).__name__}: {e}", "") for x in ch.expected], None
            rows += [Row(student, chapter, *r) for r in res]
            if run is not None:
                _write_atomic(out / "executed" / student / f"{chapter}.ipynb",
                              nbformat.writes(run.nb))
            n_pass = sum(r[1] == PASS for r in res)
            n_checks = sum(r[0] != "-" for r in res)
            took = f" in {run.seconds:.1f} s" if run else ""
            if run and run.peak:
                took += (f" (peak {run.peak['tasks']:.0f} tasks, {run.peak['rss_mb']:.0f} MB "
                         f"resident, {run.peak['disk_mb']:.0f} MB files)")
            notes = [run.stop_message] if run and run.stop_status else []
            notes += run.notes if run else []
            if res and res[0][1] == UNREADABLE:
                notes.append(res[0][2])
            n_tampered = sum(r[1] == TAMPERED for r in res)
            if n_tampered:
                notes.append(f"{n_tampered} tampered")
            used = sorted({q for r in res if r[3] for q in r[3].split("; ")})
            if used:
                notes.append(f"reference use: {', '.join(used)}")
            note = f" ({'; '.join(notes)})" if notes else ""
            print(f"{student}/{chapter}: {n_pass}/{n_checks} checks pass{took}{note}", file=log)
        for chapter in assigned:
            if chapter not in notebooks:
                rows += [Row(student, chapter, e.label, MISSING,
                             f"not submitted: no {chapter}.ipynb in {student}/")
                         for e in reference[chapter].expected]
    write_reports(rows, out)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmlib.course.grade", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submissions", type=Path, help="folder of <student>/<chapter>.ipynb")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"folder for the reports and executed copies (default {DEFAULT_OUT})")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"wall-clock seconds per notebook (default {DEFAULT_TIMEOUT})")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="run with DMLIB_QUICK=1 (default): fast grading")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="run in full mode (DMLIB_QUICK=0), as students do")
    box = ap.add_argument_group("sandbox limits, per notebook")
    box.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                     help="address space of each process and resident memory of all together "
                          f"(default {DEFAULT_MEMORY_MB})")
    box.add_argument("--disk-mb", type=int, default=DEFAULT_DISK_MB,
                     help="size of any one file and of all files together "
                          f"(default {DEFAULT_DISK_MB})")
    box.add_argument("--nproc", type=int, default=DEFAULT_NPROC,
                     help=f"processes and threads (default {DEFAULT_NPROC})")
    box.add_argument("--cpu-seconds", type=float, default=None,
                     help="CPU seconds of each process (default: the timeout times the "
                          "number of CPUs)")
    box.add_argument("--max-output-mb", type=float, default=DEFAULT_OUTPUT_MB,
                     help="captured output kept per notebook; past it only check lines "
                          f"(default {DEFAULT_OUTPUT_MB})")
    box.add_argument("--same-user", action="store_true",
                     help="as root, run kernels as root instead of a throw-away user id "
                          "(weaker: only for debugging)")
    args = ap.parse_args(argv)
    try:
        limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb, disk_mb=args.disk_mb,
                        nproc=args.nproc, cpu_seconds=args.cpu_seconds,
                        output_mb=args.max_output_mb, same_user=args.same_user)
    except ValueError as e:
        ap.error(str(e))
    try:
        rows = grade(args.submissions, args.out, args.timeout, args.quick, limits=limits)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running notebook's processes were killed; no reports written",
              file=sys.stderr)
        return 130
    summary = summarize(rows)
    print(f"graded {len({s for s, *_ in summary})} student(s), {len(summary)} notebook(s)")
    for student in dict.fromkeys(s for s, *_ in summary):
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        print(f"  {student:20s} {p:3d}/{t:<3d} {_pct(p, t):>5s} %")
    flagged = [r for r in rows if r.status == TAMPERED or r.reference_use]
    if flagged:
        print(f"  {len(flagged)} row(s) to look at (tampered, reference use): see summary.md")
    print(f"reports: {args.out / 'grades.csv'}, {args.out / 'summary.csv'}, "
          f"{args.out / 'summary.md'}; executed copies in {args.out / 'executed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
