"""rl.tools: parsing tool calls, the exact calculator, loading TRL-style tools and environments from specs, and
the runner (every failure is a response: malformed call, unknown tool, bad arguments, exception, timeout; a
hanging user function is killed and the next call works; a batch runs concurrently)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from rl.tools import (
    ToolCall,
    ToolRunner,
    calculator,
    environment_tools,
    load_environment,
    load_tools,
    parse_tool_calls,
    tool_schemas,
)
from rl.tools.builtins import evaluate

# A tool module written exactly as TRL's docs show tools (type hints + Google-style docstring), plus misbehaving
# tools for the runner; and a TRL `environment_factory`-style class.
TOOLS_PY = '''
import os
import subprocess
import sys
import time


def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


def get_weather(city: str, unit: str = "celsius") -> dict:
    """
    Gets the current weather of a city.

    Args:
        city: The city name.
        unit: The temperature unit. (choices: ["celsius", "fahrenheit"])
    """
    return {"city": city, "temperature": 18 if unit == "celsius" else 64}


def fail(message: str) -> str:
    """
    Raises an error.

    Args:
        message: What the error says.
    """
    raise KeyError(message)


def quit_process(code: int) -> str:
    """
    Ends the process.

    Args:
        code: The exit status.
    """
    if code < 0:
        os._exit(-code)
    sys.exit(code)


def hang(pid_file: str) -> str:
    """
    Starts a sleeping child process, records both pids, then never returns.

    Args:
        pid_file: Where to write the pids.
    """
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    while True:
        time.sleep(1)


def nap(seconds: float) -> list:
    """
    Sleeps, and returns when it started and ended (wall clock).

    Args:
        seconds: How long to sleep.
    """
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


async def async_add(a: int, b: int) -> int:
    """
    Adds two integers, asynchronously.

    Args:
        a: The first integer.
        b: The second integer.
    """
    return a + b
'''

ENV_PY = '''
import time


class Counter:
    """Count up to a target; the reward is 1 when the count hits it."""

    def __init__(self):
        self.count = 0
        self.target = None
        self.log = []

    def reset(self, **row) -> str | None:
        self.count, self.target = 0, row["target"]
        return f" Reach {self.target}."

    def increment(self, step: int) -> str:
        """
        Adds to the counter.

        Args:
            step: How much to add.
        """
        self.log.append(step)
        self.count += step
        return f"count={self.count}"

    def stall(self, seconds: float) -> str:
        """
        Blocks for a while.

        Args:
            seconds: How long.
        """
        time.sleep(seconds)
        return "done"

    def explode(self) -> str:
        """Raises."""
        raise RuntimeError("boom")

    def get_reward(self) -> float:
        return float(self.count == self.target)

    def _helper(self) -> None:
        pass

    @property
    def state(self) -> int:
        return self.count


class NoReset:
    def step(self, x: int) -> int:
        """
        Steps.

        Args:
            x: A number.
        """
        return x


def make_counter():
    return Counter()
'''


@pytest.fixture(scope="module")
def tool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tools")
    (path / "my_tools.py").write_text(TOOLS_PY)
    (path / "my_env.py").write_text(ENV_PY)
    return path


@pytest.fixture(scope="module")
def user_tools(tool_dir: Path) -> list:
    names = ["multiply", "get_weather", "fail", "quit_process", "hang", "nap", "async_add"]
    return load_tools(["calculator", *(f"{tool_dir}/my_tools.py:{n}" for n in names)])


@pytest.fixture(scope="module")
def runner(user_tools):
    with ToolRunner(user_tools, timeout_s=4.0, max_workers=4) as r:
        yield r


def one(runner: ToolRunner, name: str, env=None, **arguments):
    return runner.run([(ToolCall(name, arguments), env)])[0]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- parsing

def test_parse_well_formed_and_several_calls() -> None:
    text = ('<think>\nmaybe <tool_call>\n{"name": "ignored", "arguments": {}}\n</tool_call>\n</think>\n\nLet me check.\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "multiply", "arguments": "{\\"a\\": 3, \\"b\\": 4}"}\n</tool_call>\n'
            '<tool_call>{"name": "now"}</tool_call>')
    calls = parse_tool_calls(text)
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("get_weather", {"city": "Zürich"}, None), ("multiply", {"a": 3, "b": 4}, None), ("now", {}, None)]
    assert calls[0].raw == '\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n'
    assert calls[1].as_message() == {"type": "function", "function": {"name": "multiply", "arguments": {"a": 3, "b": 4}}}


@pytest.mark.parametrize(("block", "why"), [
    ('{"name": "multiply", "arguments": {"a": 3,}}', "not valid JSON"),
    ('{"arguments": {"a": 3}}', 'no "name"'),
    ('{"name": 7}', 'no "name"'),
    ('["multiply", 3]', "JSON object"),
    ('{"name": "multiply", "arguments": [3, 4]}', '"arguments" of \'multiply\' must be a JSON object'),
    ('{"name": "multiply", "arguments": "{3"}', "not valid JSON"),
    ("  \n", "empty"),
])
def test_parse_malformed_calls_are_calls_with_an_error(block: str, why: str) -> None:
    [call] = parse_tool_calls(f"<tool_call>\n{block}\n</tool_call>")
    assert call.error is not None and why in call.error and call.arguments is None


def test_parse_unclosed_or_absent_block_is_no_call() -> None:
    assert parse_tool_calls("The answer is 12.") == []
    assert parse_tool_calls('<tool_call>\n{"name": "multiply", "arguments": {"a": 3') == []
    [call] = parse_tool_calls('<tool_call>{"name": "a"}</tool_call> then <tool_call>{"name": "b"')
    assert call.name == "a"


# --- calculator

@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", "7"), ("0.1 + 0.2", "0.3"), ("1 / 3", "1/3"), ("-7 // 2", "-4"), ("7 % 3", "1"),
    ("(2 + 3) * 7 / 4", "8.75"), ("2 ** -2", "0.25"), ("-(1/8)", "-0.125"), ("2 ** 100", str(2**100)),
    ("1e3 - 1_000", "0"), ("(-1) ** 1000001", "-1"), ("1 ** 10**9", "1"), ("10**1000 / 10**999", "10"),
])
def test_calculator_is_exact(expression: str, value: str) -> None:
    assert calculator(expression) == value


@pytest.mark.parametrize(("expression", "why"), [
    ("x + 1", "names"), ("__import__('os').system('true')", "function calls"), ("abs(-1)", "function calls"),
    ("9 ** 9 ** 9", "more than 4096 bits"), ("2 ** 99999999", "more than 4096 bits"),
    ("10**1000 * 10**1000", "more than 4096 bits"), ("1e99999", "too large"), ("2 ^ 3", "**"),
    ("1 / 0", "division by zero"), ("2 ** 0.5", "integer exponents"), ("'a' * 3", "not a real number"),
    ("1 +", "not an arithmetic expression"), ("(" * 300 + "1" + ")" * 300, "not an arithmetic expression"),
    ("1" * 1001, "longer than"), ("[1, 2]", "not allowed"), ("1 < 2", "not allowed"), ("3j", "not a real"),
])
def test_calculator_rejects_what_is_not_exact_arithmetic(expression: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        evaluate(expression)
    assert why in str(info.value)


def test_calculator_errors_are_responses(runner: ToolRunner) -> None:
    result = one(runner, "calculator", expression="__import__('os')")
    assert result.error and not result.timed_out
    assert result.content == str({"error": "ValueError: function calls are not allowed: only numbers and + - * / // % **"})
    assert one(runner, "calculator", expression="6 * 7").content == "42"


# --- loading

def test_trl_style_tool_from_a_file_spec(tool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.utils import get_json_schema

    monkeypatch.chdir(tool_dir.parent)
    [multiply] = load_tools([f"{tool_dir.name}/my_tools.py:multiply"])  # relative to the working directory
    assert multiply(3, 4) == 12
    [schema] = tool_schemas([multiply])
    assert schema == get_json_schema(multiply)
    assert schema["function"]["name"] == "multiply"
    assert schema["function"]["parameters"]["required"] == ["a", "b"]
    assert tool_schemas([schema]) == [schema]


def test_builtins_have_schemas() -> None:
    calc, py = load_tools(["calculator", "python"])
    names = [s["function"]["name"] for s in tool_schemas([calc, py])]
    assert names == ["calculator", "python"]
    assert load_tools(["rl.tools.builtins:calculator"]) == [calc]  # module:function works too


@pytest.mark.parametrize(("spec", "message"), [
    ("calculater", "did you mean 'calculator'"),
    ("pyhton", "did you mean 'python'"),
    ("missing_dir/nothing.py:f", "file 'missing_dir/nothing.py' not found"),
    ("no_such_module_xyz:f", "cannot import module"),
    ("json:no_such_function", "has no function 'no_such_function'"),
    ("json:JSONDecoder", "not a function"),
])
def test_bad_tool_specs_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_tools([spec])
    assert message in str(info.value) and spec.split(":")[0] in str(info.value)


@pytest.mark.parametrize(("source", "message"), [
    ("def f(a: int) -> int:\n    return a\n", "no docstring"),
    ('def f(a) -> int:\n    """Doc.\n\n    Args:\n        a: A.\n    """\n', "missing a type hint"),
    ('def f(a: int, b: int) -> int:\n    """Doc.\n\n    Args:\n        a: A.\n    """\n', "no description for the argument 'b'"),
])
def test_tools_that_get_json_schema_cannot_describe_fail_at_load(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "bad.py").write_text(source)
    with pytest.raises(ValueError, match="get_json_schema") as info:
        load_tools([f"{tmp_path}/bad.py:f"])
    assert message in str(info.value) and "bad.py:f" in str(info.value)


def test_two_tools_with_one_name_fail(tool_dir: Path) -> None:
    with pytest.raises(ValueError, match="two tools are named 'multiply'"):
        load_tools([f"{tool_dir}/my_tools.py:multiply", f"{tool_dir}/my_tools.py:multiply"])


def test_runner_refuses_a_function_it_cannot_run_in_a_worker() -> None:
    def local(a: int) -> int:
        """Local.

        Args:
            a: A.
        """
        return a

    with pytest.raises(ValueError, match="load_tools"):
        ToolRunner([local])


# --- the runner

def test_results_are_strings_as_trl_makes_them(runner: ToolRunner) -> None:
    assert one(runner, "multiply", a=6, b=7).content == "42"
    weather = one(runner, "get_weather", city="Zürich")
    assert weather.content == str({"city": "Zürich", "temperature": 18}) and not weather.error
    assert one(runner, "async_add", a=2, b=3).content == "5"


def test_failures_are_responses(runner: ToolRunner) -> None:
    malformed = parse_tool_calls('<tool_call>\n{"name": "multiply", "arguments": {"a": 3,}}\n</tool_call>')[0]
    results = runner.run([
        (malformed, None),
        (ToolCall("divide", {"a": 1}), None),
        (ToolCall("multiply", {"a": 1}), None),
        (ToolCall("multiply", {"a": 1, "b": 2, "c": 3}), None),
        (ToolCall("fail", {"message": "no such key"}), None),
        (ToolCall("quit_process", {"code": 3}), None),
    ])
    assert all(r.error and not r.timed_out for r in results)
    contents = [r.content for r in results]
    assert contents[0].startswith("{'error': 'invalid tool call: the <tool_call> block is not valid JSON")
    assert "unknown tool 'divide'" in contents[1] and "async_add, calculator, fail, get_weather" in contents[1]
    assert "bad arguments for multiply: missing a required argument: 'b'" in contents[2]
    assert "bad arguments for multiply: got an unexpected keyword argument 'c'" in contents[3]
    assert contents[4] == str({"error": "KeyError: 'no such key'"})
    assert contents[5] == str({"error": "SystemExit: 3"})


def test_a_tool_that_kills_its_process_is_answered_and_replaced(runner: ToolRunner) -> None:
    died = one(runner, "quit_process", code=-7)
    assert died.error and "exited (status 7)" in died.content
    assert one(runner, "multiply", a=2, b=2).content == "4"


def test_a_hanging_tool_is_killed_with_its_children_and_the_next_call_works(runner: ToolRunner,
                                                                         tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    result = one(runner, "hang", pid_file=str(pid_file))
    assert result.timed_out and result.error
    assert result.content == str({"error": "hang did not return within 4 s and was killed"})
    worker_pid, child_pid = map(int, pid_file.read_text().split())
    assert worker_pid != os.getpid()
    deadline = time.monotonic() + 10
    while (alive(worker_pid) or alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker_pid) and not alive(child_pid)
    assert one(runner, "multiply", a=3, b=5).content == "15"


def test_a_worker_that_cannot_import_its_tools_answers_an_error(tmp_path: Path) -> None:
    (tmp_path / "gone.py").write_text(TOOLS_PY)
    [multiply] = load_tools([f"{tmp_path}/gone.py:multiply"])
    (tmp_path / "gone.py").unlink()  # the worker imports the spec itself, and fails
    with ToolRunner([multiply], timeout_s=4.0, max_workers=1) as r:
        result = one(r, "multiply", a=1, b=2)
    assert result.error and "could not load the tools" in result.content and "not found" in result.content


def test_a_hung_worker_ends_when_its_parent_dies(tool_dir: Path, tmp_path: Path) -> None:
    """A worker stuck in a tool whose driver died (no close, no kill) does not outlive it."""
    import subprocess
    import sys

    pid_file = tmp_path / "pids"
    driver = (f"from rl.tools import ToolCall, ToolRunner, load_tools\n"
              f"fs = load_tools([{str(tool_dir / 'my_tools.py') + ':hang'!r}])\n"
              f"ToolRunner(fs, timeout_s=600).run([(ToolCall('hang', {{'pid_file': {str(pid_file)!r}}}), None)])\n")
    proc = subprocess.Popen([sys.executable, "-c", driver])
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_pid, _ = map(int, pid_file.read_text().split())
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker_pid)


def test_a_batch_runs_concurrently(runner: ToolRunner) -> None:
    # every worker started (each call holds its worker a while, so the four calls take four distinct workers)
    warm = runner.run([(ToolCall("nap", {"seconds": 1.0}), None)] * 4)
    assert not any(r.error for r in warm)
    results = runner.run([(ToolCall("nap", {"seconds": 1.5}), None)] * 4)
    intervals = [json.loads(r.content) for r in results]
    assert max(start for start, _ in intervals) < min(end for _, end in intervals)  # all four slept at once


# --- environments

def test_environment_loads_as_trl_discovers_it(tool_dir: Path) -> None:
    factory = load_environment(f"{tool_dir}/my_env.py:Counter")
    env = factory()
    assert env.reset(target=3, prompt="p") == " Reach 3."
    tools = environment_tools(env)
    assert [t.__name__ for t in tools] == ["explode", "increment", "stall"]  # no reset / get_reward / _private
    assert all(t.__self__ is env for t in tools)
    schemas = tool_schemas(environment_tools(factory))
    assert schemas[1]["function"]["parameters"]["properties"] == {"step": {"type": "integer",
                                                                          "description": "How much to add."}}
    made = load_environment(f"{tool_dir}/my_env.py:make_counter")  # a factory function
    assert type(made()).__name__ == "Counter"


def test_environment_without_reset_fails_at_load(tool_dir: Path) -> None:
    with pytest.raises(ValueError, match="NoReset has no `reset"):
        load_environment(f"{tool_dir}/my_env.py:NoReset")
    with pytest.raises(ValueError, match="environment 'nowhere.py:Env': file 'nowhere.py' not found"):
        load_environment("nowhere.py:Env")


def test_environment_methods_act_on_their_own_instance_in_order(tool_dir: Path, user_tools) -> None:
    factory = load_environment(f"{tool_dir}/my_env.py:Counter")
    envs = [factory(), factory()]
    for env, target in zip(envs, (3, 5)):
        env.reset(target=target)
    with ToolRunner(user_tools[:2], timeout_s=4.0, max_workers=4) as r:
        steps = [(envs[0], 1), (envs[1], 5), (envs[0], 2), (envs[0], 4)]
        results = r.run([(ToolCall("increment", {"step": s}), e) for e, s in steps]
                        + [(ToolCall("multiply", {"a": 2, "b": 3}), envs[0]), (ToolCall("explode", {}), envs[1])])
    assert [x.content for x in results[:5]] == ["count=1", "count=5", "count=3", "count=7", "6"]
    assert envs[0].log == [1, 2, 4]  # one instance's calls ran in order
    assert results[5].content == str({"error": "RuntimeError: boom"})
    assert [e.get_reward() for e in envs] == [0.0, 1.0]


def test_an_overrunning_environment_method_breaks_only_its_instance(tool_dir: Path) -> None:
    factory = load_environment(f"{tool_dir}/my_env.py:Counter")
    stuck, fine = factory(), factory()
    with ToolRunner([], timeout_s=1.0, max_workers=2) as r:
        [slow] = r.run([(ToolCall("stall", {"seconds": 30}), stuck)])
        assert slow.timed_out and "stall did not return within 1 s" in slow.content
        assert r.is_broken(stuck) and not r.is_broken(fine)
        again, ok = r.run([(ToolCall("increment", {"step": 1}), stuck), (ToolCall("increment", {"step": 1}), fine)])
    assert again.error and "this environment is unusable" in again.content and stuck.count == 0
    assert ok.content == "count=1"


def test_docs_example_tool_file_matches(tool_dir: Path) -> None:
    """The TRL docs' example tool is a plain function: it stays callable as is after loading."""
    [get_weather] = load_tools([f"{tool_dir}/my_tools.py:get_weather"])
    assert get_weather("Paris", unit="fahrenheit") == {"city": "Paris", "temperature": 64}
    enum = tool_schemas([get_weather])[0]["function"]["parameters"]["properties"]["unit"]["enum"]
    assert enum == ["celsius", "fahrenheit"]
