"""Fuzzing the configuration loader (issue 10 item 4 and the issue's fuzz test).

Whatever the file holds -- YAML-ish noise, a mutated valid configuration,
alias chains of any fan-out, nesting of any depth -- `load_config` either
returns a configuration or raises a ConfigError whose every problem names the
file; never another exception, and never more than a bounded amount of memory
(tracemalloc peak per example). Bounded in time by the number of examples.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from invoicesync.daemon.config.loader import ConfigError, load_config
from invoicesync.daemon.plugin_host import PluginRegistry, load_plugins
from invoicesync.plugins.errors import ConfigurationError

MEMORY_BOUND = 64 * 1024 * 1024

VALID = """version: 1
state: ./state
timezone: Europe/Berlin
sources:
  - id: inbox
    type: folder
    schedule: {every: 1h}
    options: {path: ./inbox, recursive: true}
exports:
  - id: out
    type: folder
    filename: "{company}/{number}.{ext}"
    restrictions:
      period: {relative_to: document_date, last: 3m}
      attributes: {types: [incoming_invoice], payment_status: [paid]}
    options: {path: ./out}
"""

YAML_CHARS = "[]{}:,-&*!|>'\"#%@`?<=~ \n\t\\abcz019.eE+_/é\u202e\x00"

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(alphabet=YAML_CHARS, max_size=20),
    st.sampled_from(["1e999999999", "-.inf", ".nan", "0x1F", "2026-13-45", "env:NOPE",
                     "keyring:../x", "credential:a", "~", "!!binary aGk=", "<<"]),
)


@st.composite
def alias_chain(draw: st.DrawFn) -> str:
    """A "billion laughs" of random shape: levels x fan-out aliases, maybe merged in."""
    levels = draw(st.integers(1, 14))
    fanout = draw(st.integers(1, 14))
    lines = ["x-0: &a0 [lol, lol]"]
    for i in range(1, levels):
        lines.append(f"x-{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    where = draw(st.sampled_from(["top", "options"]))
    text = "\n".join(lines) + "\n" + VALID
    if where == "options":
        text = text.replace("recursive: true", f"recursive: true, x: *a{levels - 1}")
    return text


@st.composite
def deep(draw: st.DrawFn) -> str:
    # Past ~1,000 levels ruamel's scanner costs ~1.5 s a file (test_cli_yaml_limits covers 5,000).
    depth = draw(st.integers(1, 300))
    opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("[{b: ", "}]")]))
    return VALID + "x-deep: " + opener * depth + "1" + closer * depth + "\n"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The valid file with a few slices replaced by noise or random scalars."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 30)))
        noise = draw(st.one_of(st.text(alphabet=YAML_CHARS, max_size=30), scalars.map(str)))
        text = text[:start] + noise + text[end:]
    return text


documents = st.one_of(
    st.text(alphabet=YAML_CHARS, max_size=400), alias_chain(), deep(), mutated()
)


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return load_plugins(entry_points=False)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=documents)
# Scalars that match YAML's float/int/timestamp patterns but make Python's
# constructors raise (the first was found by this test in CI).
@example(text="version: ._\n")
@example(text="version: 0b_\n")
@example(text="state: 2025-02-30\n")
def test_the_loader_answers_every_input_with_a_clear_error(
    tmp_path: Path, registry: PluginRegistry, text: str
) -> None:
    path = tmp_path / "invoicesync.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    tracemalloc.start()
    try:
        load_config(path, registry)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert str(problem).startswith(str(path)), problem
            assert problem.message
    except ConfigurationError as exc:  # e.g. a folder that cannot be created
        assert str(exc)
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak} bytes for a {len(text)}-character file"
