"""What a user installs: one version, a pinned public API, the typed stub, the CLI's version.

The same tests run against an editable checkout and against an installed wheel (cibuildwheel's
test-command and ``make wheel-check`` set ``SURESTEP_TEST_INSTALLED=1``). With ``SURESTEP_DIST``
naming a directory, they also inspect the sdist and the wheel built in it (``make wheel``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import surestep
from surestep import _core, _lmdb

PACKAGE_DIR = Path(surestep.__file__).parent
SOURCE_TREE = Path(__file__).resolve().parent.parent
SOURCE_PACKAGE = SOURCE_TREE / "src" / "surestep"

# STYLE item 4: the public API is this list. Adding or removing a name is a decision, made here
# as well as in src/surestep/__init__.py.
PUBLIC_NAMES = [
    "AnswerError",
    "AsyncClient",
    "BackoffPolicy",
    "BatchItemError",
    "BatchItemResult",
    "BatchResult",
    "BatchStats",
    "BackoffType",
    "ChildWorkflowError",
    "Client",
    "ConfigurationError",
    "Context",
    "DefinitionError",
    "DirectCallError",
    "Engine",
    "EventTimeoutError",
    "FunctionContext",
    "JournalCorruptError",
    "JournalEntry",
    "LeaseLostError",
    "NonDeterminismError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "RunCancelledError",
    "RunFinishedError",
    "RunHandle",
    "RunInfo",
    "RunNotFinishedError",
    "RunNotFoundError",
    "ScheduleNotFoundError",
    "SerializationError",
    "StateConflictError",
    "StepFailedError",
    "StepTimeoutError",
    "StoreError",
    "StoreFullError",
    "SurestepError",
    "UnknownWorkflowError",
    "UnsupportedFormatError",
    "WorkflowContext",
    "WorkflowFailedError",
    "__version__",
    "event",
    "function",
    "register_exception",
    "run",
    "webhook",
    "workflow",
]

# Build products and Cython sources that must never be installed as package files.
NOT_SHIPPED = (".c", ".pyx", ".pxi", ".pxd")


def test_public_api_is_pinned() -> None:
    assert sorted(surestep.__all__) == sorted(PUBLIC_NAMES), (
        "surestep.__all__ changed: if that is intended, update PUBLIC_NAMES in this file too"
    )
    assert len(set(surestep.__all__)) == len(surestep.__all__)
    for name in PUBLIC_NAMES:
        assert hasattr(surestep, name), name


def test_importing_surestep_or_its_cli_imports_no_web_stack() -> None:
    """The web framework, the server and the HTTP client load on first use only."""
    code = (
        "import sys, surestep, surestep.cli; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_version() -> None:
    from surestep._version import __version__

    assert surestep.__version__ == __version__
    assert _core.__version__ == __version__
    assert importlib.metadata.version("surestep") == __version__


def test_format_version_is_the_one_records_carry() -> None:
    assert isinstance(_core.FORMAT_VERSION, int)
    assert _core.FORMAT_VERSION >= 1
    record = _core.encode_record(_core.KIND_STEP, 0, 1, "s", None, None, b"null", True, None, None)
    assert record[0] == _core.FORMAT_VERSION
    assert _core.decode_record(record).version == _core.FORMAT_VERSION


def test_typed_stubs_and_marker_sit_next_to_the_modules() -> None:
    for module in (_core, _lmdb):
        compiled = Path(module.__file__ or "")
        assert compiled.parent == PACKAGE_DIR
        assert compiled.suffix in {".so", ".pyd"}, compiled
        assert (PACKAGE_DIR / f"{module.__name__.rsplit('.', 1)[1]}.pyi").is_file()
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_no_sources_or_generated_c_installed() -> None:
    shipped = [p for p in PACKAGE_DIR.rglob("*") if p.suffix in NOT_SHIPPED]
    assert shipped == []


@pytest.mark.skipif(
    os.environ.get("SURESTEP_TEST_INSTALLED") != "1",
    reason="only when testing an installed wheel (SURESTEP_TEST_INSTALLED=1)",
)
def test_imported_from_the_installed_wheel() -> None:
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    assert PACKAGE_DIR.resolve().parent in site, (
        f"surestep was imported from {PACKAGE_DIR}, not from the installed wheel"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("surestep.cli") is None, reason="no surestep.cli module yet"
)
def test_cli_reports_both_versions() -> None:
    # Prefer the script installed beside this interpreter over anything else on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("surestep", path=path)
    if exe is None:
        pytest.skip("the surestep script is not installed")
    out = subprocess.run(
        [exe, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == f"surestep {surestep.__version__} (journal format {_core.FORMAT_VERSION})"


# ---------------------------------------------------------------- built artifacts (make wheel)

DIST = os.environ.get("SURESTEP_DIST")
needs_dist = pytest.mark.skipif(not DIST, reason="SURESTEP_DIST names no dist directory")


def _one(pattern: str) -> Path:
    found = sorted(Path(DIST or ".").glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {found}"
    return found[0]


@needs_dist
def test_sdist_is_complete() -> None:
    sdist = _one("surestep-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for required in (
        "pyproject.toml",
        "setup.py",
        "ext/_core.pyx",
        "ext/_lmdb.pyx",
        "ext/lmdb/mdb.c",
        "ext/lmdb/midl.c",
        "ext/lmdb/lmdb.h",
        "ext/lmdb/midl.h",
        "ext/lmdb/LICENSE",
        "src/surestep/_core.pyi",
        "src/surestep/_lmdb.pyi",
        "src/surestep/py.typed",
        "src/surestep/_version.py",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "stubtest-allowlist.txt",
    ):
        assert required in names, required
    pyx_dir = SOURCE_TREE / "ext"
    if pyx_dir.is_dir():  # every Cython source of the tree, not only the ones named above
        for source in pyx_dir.iterdir():
            if source.suffix in {".pyx", ".pxi", ".pxd"}:
                assert f"ext/{source.name}" in names, source.name
    top = [n for n in names if n.startswith("ext/") and n.count("/") == 1]
    assert not [n for n in top if n.endswith(".c")], "generated C"  # LMDB's is in ext/lmdb/
    assert not [n for n in names if n.endswith((".so", ".pyc"))]


@needs_dist
def test_wheel_holds_the_package_and_no_sources() -> None:
    wheel = _one("surestep-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert not [n for n in names if n.endswith(NOT_SHIPPED)], "sources or generated C"
    for module in ("_core", "_lmdb"):
        built = [n for n in names if n.startswith(f"surestep/{module}.")]
        assert [n for n in built if n.endswith((".so", ".pyd"))], module
        assert f"surestep/{module}.pyi" in names
    assert "surestep/py.typed" in names
    if SOURCE_PACKAGE.is_dir():  # every package file of the tree is shipped (data files too)
        for path in SOURCE_PACKAGE.rglob("*"):
            if path.name.startswith(".") or path.name.endswith("~") or not path.is_file():
                continue  # editor and OS droppings
            if path.suffix not in {*NOT_SHIPPED, ".so", ".pyc", ".pyd"}:
                rel = path.relative_to(SOURCE_PACKAGE.parent).as_posix()
                assert rel in names, f"{rel} is in the source tree but not in the wheel"
