"""Plugins that fail or mislead: at import, by their entry point, by their shape.

Each plugin is a module in a temporary directory, registered by a dist-info
there: on ``sys.path`` for the loaders, on ``PYTHONPATH`` for the command line.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stevedore import ExtensionManager

from e3_typed_store import CACHE_NAMESPACE, STORE_NAMESPACE, load_cache, load_store
from e3_typed_store._cli import EXIT_PLUGIN
from e3_typed_store.errors import PluginError

# A conforming store, and variants of it.
GOOD = """
import os

from e3_typed_store.backends.base import ResourceInfo, Store


class Info(ResourceInfo):
    @property
    def uid(self):
        return "good"

    def verify(self, resource_path):
        return True


class Good(Store):
    def get_resource_metadata(self, query):
        return Info()

    def download_resource_content(self, metadata, dest):
        path = os.path.join(dest, "good")
        with open(path, "w") as f:
            f.write("good")
        return path


class Outer:
    class Inner(Good):
        pass


class TakesARoot(Good):
    def __init__(self, root):
        self.root = root


class RaisesTypeError(Good):
    def __init__(self, *args):
        raise TypeError("a bug of the driver")


class NoMetadata:
    # Store-like (no Store base, as load_store accepts), without one method.
    def __init__(self, configuration, cache):
        pass

    def download_resource(self, metadata, dest):
        return None

    def download_resource_content(self, metadata, dest):
        return None


class Nothing:
    pass
"""

CACHES = """
from e3_typed_store.cache.backends.memory import MemoryCache


class TakesNothing(MemoryCache):
    def __init__(self):
        super().__init__(None)
"""

FAILING_IMPORTS = {
    "e3ts_f_assert": "assert False, 'asserted at import'\n",
    "e3ts_f_exit": "raise SystemExit(3)\n",
    "e3ts_f_runtime": "raise RuntimeError('boom at import')\n",
    "e3ts_f_syntax": "def Broken(:\n",
    "e3ts_f_interrupt": "raise KeyboardInterrupt\n",
    # No Exception: stevedore lets it through.
    "e3ts_f_base": "class Boom(BaseException):\n    pass\n\n\nraise Boom('no')\n",
    "e3ts_f_generator_exit": "raise GeneratorExit\n",
}

# A class whose attributes raise: its metaclass says so for any name missing.
ODD_CLASS = """
class Meta(type):
    def __getattr__(cls, name):
        raise RuntimeError(f"no {name} here")


class Odd(metaclass=Meta):
    pass
"""


def make_plugins(
    root: Path, distributions: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write *modules* and a dist-info per distribution (its entry_points.txt)."""
    root.mkdir(exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    for name, entry_points in distributions.items():
        # The directory's name as an installer writes it: importlib.metadata
        # takes the name before its first "-" as the distribution's.
        dist = root / f"{name.replace('-', '_')}-0.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0\n"
        )
        (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


@pytest.fixture
def installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str], dict[str, str]], Path]]:
    """Install plugins in this process, for the loaders."""
    modules: set[str] = set()

    def install(distributions: dict[str, str], sources: dict[str, str]) -> Path:
        root = make_plugins(tmp_path / "site", distributions, sources)
        modules.update(sources)
        monkeypatch.setattr(sys, "path", [str(root), *sys.path])
        importlib.invalidate_caches()
        # stevedore keeps each namespace's entry points for the process's life.
        monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
        return root

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e3_typed_store", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


# --- the loaders --------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "shown"),
    [
        ("e3ts_f_assert", "AssertionError('asserted at import')"),
        ("e3ts_f_exit", "SystemExit(3)"),
        ("e3ts_f_runtime", "RuntimeError('boom at import')"),
        ("e3ts_f_syntax", "SyntaxError("),
        ("e3ts_f_base", "Boom('no')"),
        ("e3ts_f_generator_exit", "GeneratorExit()"),
    ],
)
def test_whatever_an_import_raises_is_a_plugin_error(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
    module: str,
    shown: str,
) -> None:
    installed(
        {
            "e3ts-failing": f"""
            [{STORE_NAMESPACE}]
            failing = {module}:Store
            [{CACHE_NAMESPACE}]
            failing = {module}:Cache
            """
        },
        {module: FAILING_IMPORTS[module]},
    )
    with pytest.raises(PluginError, match="cannot be imported") as raised:
        load_store("failing", {}, None)
    assert shown in raised.value.reason
    assert raised.value.name == "failing"
    with pytest.raises(PluginError, match="cannot be imported") as raised:
        load_cache("failing")
    assert shown in raised.value.reason


def test_a_keyboard_interrupt_at_import_stays_one(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
) -> None:
    # It may be the user's Ctrl-C: not a plugin's failure to hide.
    installed(
        {"e3ts-interrupt": f"[{STORE_NAMESPACE}]\ninterrupt = e3ts_f_interrupt:S\n"},
        {"e3ts_f_interrupt": FAILING_IMPORTS["e3ts_f_interrupt"]},
    )
    with pytest.raises(KeyboardInterrupt):
        load_store("interrupt", {}, None)


def test_a_name_registered_twice_is_refused_though_one_fails_to_import(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
) -> None:
    installed(
        {
            "e3ts-first": f"[{STORE_NAMESPACE}]\ndup = e3ts_good_dup:Good\n",
            "e3ts-second": f"[{STORE_NAMESPACE}]\ndup = e3ts_f_runtime:Good\n",
        },
        {
            "e3ts_good_dup": GOOD,
            "e3ts_f_runtime": FAILING_IMPORTS["e3ts_f_runtime"],
        },
    )
    with pytest.raises(PluginError, match="registered more than once"):
        load_store("dup", {}, None)


def test_an_entry_point_that_is_not_module_attribute_is_named(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
) -> None:
    installed(
        {"e3ts-typo": f"[{STORE_NAMESPACE}]\ntypo = my_pkg.mirror MirrorStore\n"}, {}
    )
    with pytest.raises(PluginError) as raised:
        load_store("typo", {}, None)
    assert raised.value.reason == "'my_pkg.mirror MirrorStore' is not module:attribute"


def test_a_constructor_that_does_not_take_what_the_loader_passes_is_refused(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
) -> None:
    installed(
        {
            "e3ts-ctor": f"""
            [{STORE_NAMESPACE}]
            rooted = e3ts_good_ctor:TakesARoot
            [{CACHE_NAMESPACE}]
            bare = e3ts_caches_ctor:TakesNothing
            """
        },
        {"e3ts_good_ctor": GOOD, "e3ts_caches_ctor": CACHES},
    )
    with pytest.raises(PluginError) as raised:
        load_store("rooted", {}, None)
    assert raised.value.name == "rooted"
    assert raised.value.reason == (
        "__init__() takes (root), expected (store_configuration, cache_backend)"
    )
    with pytest.raises(PluginError) as raised:
        load_cache("bare")
    assert raised.value.reason == "__init__() takes (), expected (cache_configuration)"


def test_a_type_error_from_the_constructor_names_the_driver(
    installed: Callable[[dict[str, str], dict[str, str]], Path],
) -> None:
    installed(
        {
            "e3ts-raises": f"""
            [{STORE_NAMESPACE}]
            raises = e3ts_good_raises:RaisesTypeError
            """
        },
        {"e3ts_good_raises": GOOD},
    )
    with pytest.raises(PluginError) as raised:
        load_store("raises", {}, None)
    assert raised.value.name == "raises"
    assert raised.value.reason == ("cannot be built: TypeError('a bug of the driver')")
    assert isinstance(raised.value.__cause__, TypeError)


# --- check_driver -------------------------------------------------------------


SHAPES = (
    GOOD
    + """
import time

from e3_typed_store.cache.backends.memory import MemoryCache


def logged(method):
    # A decorator that does not copy the signature (no functools.wraps).
    def wrapper(*args, **kwargs):
        return method(*args, **kwargs)

    return wrapper


class StaticExpiry(MemoryCache):
    @staticmethod
    def get_expiry_time(timeout):
        return time.time() + timeout


class ClassExpiry(MemoryCache):
    @classmethod
    def get_expiry_time(cls, timeout):
        return time.time() + timeout


class StaticWrongName(MemoryCache):
    @staticmethod
    def get_expiry_time(seconds):
        return time.time() + seconds


class Decorated(Good):
    @logged
    def download_resource_content(self, metadata, dest):
        return super().download_resource_content(metadata, dest)


class StarArgsAfterAWrongName(Good):
    def download_resource_content(self, meta, *args):
        return None
"""
)


@pytest.fixture
def shapes(installed: Callable[[dict[str, str], dict[str, str]], Path]) -> None:
    installed(
        {
            "e3ts-shapes": f"""
            [{STORE_NAMESPACE}]
            decorated = e3ts_shapes:Decorated
            star-args = e3ts_shapes:StarArgsAfterAWrongName
            [{CACHE_NAMESPACE}]
            static = e3ts_shapes:StaticExpiry
            class = e3ts_shapes:ClassExpiry
            static-wrong-name = e3ts_shapes:StaticWrongName
            """
        },
        {"e3ts_shapes": SHAPES},
    )


@pytest.mark.usefixtures("shapes")
def test_static_class_and_decorated_methods_conform() -> None:
    loaded: list[object] = [
        load_cache("static"),
        load_cache("class"),
        load_store("decorated", {}, None),
    ]
    assert [type(driver).__name__ for driver in loaded] == [
        "StaticExpiry",
        "ClassExpiry",
        "Decorated",
    ]


@pytest.mark.usefixtures("shapes")
def test_static_and_star_args_methods_are_still_checked() -> None:
    with pytest.raises(PluginError) as raised:
        load_cache("static-wrong-name")
    assert raised.value.reason == (
        "get_expiry_time() takes (seconds), expected (timeout)"
    )
    with pytest.raises(PluginError) as raised:
        load_store("star-args", {}, None)
    assert raised.value.reason == (
        "download_resource_content() takes (meta), expected (metadata, dest)"
    )


# --- the command line ---------------------------------------------------------


@pytest.fixture
def cli_plugins(tmp_path: Path) -> Path:
    """Failing, noisy and good plugins, for a command line run with PYTHONPATH."""
    return make_plugins(
        tmp_path / "site",
        {
            "e3ts-cli": f"""
            [{STORE_NAMESPACE}]
            aaa-asserts = e3ts_f_assert:S
            aaa-exits = e3ts_f_exit:S
            aaa-interrupts = e3ts_f_interrupt:S
            base-exception = e3ts_f_base:S
            odd = e3ts_odd:Odd
            noisy = e3ts_noisy:Good
            zzz-good = e3ts_good:Good
            nested = e3ts_good:Outer.Inner
            a:b = e3ts_good:Good
            tab\tin name = e3ts_good:Good
            """
        },
        {
            **FAILING_IMPORTS,
            "e3ts_good": GOOD,
            "e3ts_noisy": "print('HELLO FROM PLUGIN')\n" + GOOD,
            "e3ts_odd": ODD_CLASS,
        },
    )


def test_drivers_lists_every_driver_whatever_one_raises(cli_plugins: Path) -> None:
    # Without the plugin that interrupts: that is Ctrl-C.
    (cli_plugins / "e3ts_f_interrupt.py").write_text("raise RuntimeError('no')\n")
    result = cli(cli_plugins, "drivers")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    # Every line is namespace<TAB>name<TAB>status: what a plugin prints at
    # import goes to stderr.
    assert all(line.count("\t") >= 2 for line in lines), lines
    assert "HELLO FROM PLUGIN" in result.stderr
    status = {
        line.split("\t")[1]: line.split("\t", 2)[2]
        for line in lines
        if line.startswith(f"{STORE_NAMESPACE}\t")
    }
    assert status["aaa-asserts"] == (
        "cannot load: cannot be imported: AssertionError('asserted at import')"
    )
    assert status["aaa-exits"] == "cannot load: cannot be imported: SystemExit(3)"
    assert status["base-exception"] == "cannot load: cannot be imported: Boom('no')"
    assert status["odd"].startswith("e3ts_odd:Odd\tdoes not conform: ")
    assert (
        "get_resource_metadata() cannot be inspected:"
        " RuntimeError('no get_resource_metadata here')"
    ) in status["odd"]
    assert status["zzz-good"] == "e3ts_good:Good\tok"
    assert status["noisy"] == "e3ts_noisy:Good\tok"
    assert status["nested"] == "e3ts_good:Outer.Inner\tok"
    # A tab in a name (entry point files allow one) is shown escaped.
    assert status["tab\\tin name"] == "e3ts_good:Good\tok"


def test_drivers_names_the_driver_whose_import_never_ends(tmp_path: Path) -> None:
    root = make_plugins(
        tmp_path / "site",
        {"e3ts-loop": f"[{STORE_NAMESPACE}]\nloops = e3ts_loop:S\n"},
        {"e3ts_loop": "import time\nwhile True:\n    time.sleep(0.1)\n"},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "e3_typed_store", "drivers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"\tloops\t" not in seen and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert process.poll() is None  # still importing it
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    # The unfinished last line names it.
    assert seen.endswith(f"{STORE_NAMESPACE}\tloops\t".encode()), seen


@pytest.mark.parametrize(
    ("module", "shown"),
    [
        ("e3ts_f_assert", "AssertionError('asserted at import')"),
        ("e3ts_f_exit", "SystemExit(3)"),
        ("e3ts_f_runtime", "RuntimeError('boom at import')"),
        ("e3ts_f_syntax", "SyntaxError("),
        ("e3ts_f_base", "Boom('no')"),
    ],
)
def test_check_driver_on_a_class_whose_module_raises(
    cli_plugins: Path, module: str, shown: str
) -> None:
    result = cli(cli_plugins, "check-driver", f"{module}:Thing")
    assert result.returncode == EXIT_PLUGIN, result.stderr
    assert "Traceback" not in result.stderr
    assert f"'{module}:Thing'" in result.stderr
    assert f"cannot be imported: {shown}" in result.stderr


def test_check_driver_on_a_class_whose_attributes_raise(cli_plugins: Path) -> None:
    result = cli(cli_plugins, "check-driver", "odd")
    assert result.returncode == EXIT_PLUGIN, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "e3ts_odd:Odd: download_resource_content() cannot be inspected:"
        " RuntimeError('no download_resource_content here')"
    ) in result.stdout


def test_check_driver_on_a_module_class_whose_attributes_raise(
    cli_plugins: Path,
) -> None:
    # Named by module:Class, the API it is closer to is found first.
    result = cli(cli_plugins, "check-driver", "e3ts_odd:Odd")
    assert result.returncode == EXIT_PLUGIN, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot be inspected: RuntimeError(" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is no signal to catch")
@pytest.mark.parametrize("command", [["drivers"], ["check-driver", "slow"]])
def test_a_sigterm_while_a_driver_is_imported_ends_the_command(
    tmp_path: Path, command: list[str]
) -> None:
    # Not a failure of the driver's import, to list and go on from.
    started = tmp_path / "importing"
    root = make_plugins(
        tmp_path / "site",
        {"e3ts-slow": f"[{STORE_NAMESPACE}]\nslow = e3ts_slow:S\n"},
        {
            "e3ts_slow": (
                f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                "time.sleep(60)\n"
            )
        },
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "e3_typed_store", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the driver was never imported"
            time.sleep(0.01)
        child.terminate()
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert (child.returncode, stderr) == (143, "e3-typed-store: error: terminated\n")


def test_check_driver_on_a_name_whose_import_exits(cli_plugins: Path) -> None:
    result = cli(cli_plugins, "check-driver", "aaa-exits")
    assert result.returncode == EXIT_PLUGIN
    assert "cannot be imported: SystemExit(3)" in result.stderr


def test_check_driver_on_a_name_whose_import_interrupts(cli_plugins: Path) -> None:
    # A KeyboardInterrupt is the user's Ctrl-C, as far as anyone can tell.
    result = cli(cli_plugins, "check-driver", "aaa-interrupts")
    assert result.returncode == 130
    assert result.stderr.endswith("error: interrupted\n")


def test_check_driver_on_a_nested_class_and_a_name_with_a_colon(
    cli_plugins: Path,
) -> None:
    for target in ("e3ts_good:Outer.Inner", "nested", "a:b"):
        result = cli(cli_plugins, "check-driver", target)
        assert result.returncode == 0, (target, result.stderr)
        assert "conforms to the store API" in result.stdout
    # What a plugin prints at import goes to stderr.
    noisy = cli(cli_plugins, "check-driver", "e3ts_noisy:Good")
    assert noisy.stdout == "e3ts_noisy:Good: conforms to the store API\n"
    assert "HELLO FROM PLUGIN" in noisy.stderr


def test_check_driver_checks_a_class_against_the_api_it_is_closer_to(
    cli_plugins: Path,
) -> None:
    result = cli(cli_plugins, "check-driver", "e3ts_good:NoMetadata")
    assert result.returncode == EXIT_PLUGIN
    assert result.stdout.splitlines() == [
        "e3ts_good:NoMetadata: missing method get_resource_metadata()",
        "e3ts_good:NoMetadata: checked against the store API, which it is closer"
        " to (--kind cache checks the cache API)",
    ]
    neither = cli(cli_plugins, "check-driver", "e3ts_good:Nothing")
    assert neither.returncode == EXIT_PLUGIN
    lines = neither.stdout.splitlines()
    assert lines[0] == "e3ts_good:Nothing: as close to either API: checked against both"
    assert "e3ts_good:Nothing: store API: missing method get_resource_metadata()" in (
        lines
    )
    assert "e3ts_good:Nothing: cache API: missing method get()" in lines


def test_check_driver_checks_the_constructor(cli_plugins: Path) -> None:
    result = cli(cli_plugins, "check-driver", "e3ts_good:TakesARoot")
    assert result.returncode == EXIT_PLUGIN
    assert result.stdout.splitlines()[0] == (
        "e3ts_good:TakesARoot: __init__() takes (root), expected"
        " (store_configuration, cache_backend)"
    )
