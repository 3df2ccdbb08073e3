"""The AgentCore Code Interpreter emulator, driven by real boto3 and the real bedrock-agentcore SDK over loopback."""

from __future__ import annotations

import functools
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from ptc_mcp.emulators.agentcore import AgentCoreEmulator, Fault, running_emulator
from ptc_mcp.emulators.eventstream import encode_event, encode_exception

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
INTERPRETER = "aws.codeinterpreter.v1"
T = TypeVar("T")


async def blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """boto3 blocks: run it on a thread, bounded."""
    with anyio.fail_after(WAIT_S):
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), abandon_on_cancel=True)


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Any, AgentCoreEmulator]]:
    async with running_emulator() as (url, running):
        client = boto3.client(
            "bedrock-agentcore",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
            config=BotoConfig(read_timeout=WAIT_S, retries={"mode": "standard", "max_attempts": 3}),
        )
        yield client, running


async def start(client: Any, **extra: Any) -> str:
    response = await blocking(client.start_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, **extra)
    session_id: str = response["sessionId"]
    return session_id


async def invoke(client: Any, session_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    def call() -> dict[str, Any]:
        response = client.invoke_code_interpreter(
            codeInterpreterIdentifier=INTERPRETER, sessionId=session_id, name=name, arguments=arguments
        )
        events = list(response["stream"])
        assert len(events) == 1
        result: dict[str, Any] = events[0]["result"]
        return result

    return await blocking(call)


async def test_a_session_starts_reports_ready_and_stops_as_terminated(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client, name="tests", sessionTimeoutSeconds=120)
    described = await blocking(
        client.get_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, sessionId=session_id
    )
    assert (described["status"], described["name"], described["sessionTimeoutSeconds"]) == ("READY", "tests", 120)

    stopped = await blocking(
        client.stop_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, sessionId=session_id
    )
    assert stopped["sessionId"] == session_id
    described = await blocking(
        client.get_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, sessionId=session_id
    )
    assert described["status"] == "TERMINATED"
    with pytest.raises(ClientError) as caught:
        await invoke(client, session_id, "executeCode", code="1")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


async def test_an_unknown_session_is_resource_not_found(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await blocking(client.get_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, sessionId="NOPE")


async def test_execute_code_keeps_python_state_between_calls(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client)
    await invoke(client, session_id, "executeCode", code="counter = 41", language="python")
    result = await invoke(client, session_id, "executeCode", code="counter += 1\nprint('counter', counter)")
    assert not result["isError"]
    assert result["structuredContent"]["stdout"] == "counter 42\n"
    assert result["content"] == [{"type": "text", "text": "counter 42\n"}]


async def test_an_exception_in_code_is_an_error_result_with_its_traceback(
    emulator: tuple[Any, AgentCoreEmulator],
) -> None:
    client, _ = emulator
    session_id = await start(client)
    result = await invoke(client, session_id, "executeCode", code="x = 1\n1 / 0")
    assert result["isError"]
    assert result["structuredContent"]["exitCode"] == 1
    assert "ZeroDivisionError" in result["structuredContent"]["stderr"]


async def test_clear_context_forgets_variables(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client)
    await invoke(client, session_id, "executeCode", code="kept = 1")
    result = await invoke(client, session_id, "executeCode", code="print('kept' in globals())", clearContext=True)
    assert result["structuredContent"]["stdout"] == "False\n"


async def test_files_are_written_read_listed_and_removed(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client)
    written = await invoke(
        client,
        session_id,
        "writeFiles",
        content=[{"path": "data/notes.txt", "text": "héllo"}, {"path": "data/raw.bin", "blob": b"\x00\xffbinary"}],
    )
    assert not written["isError"]

    read = await invoke(client, session_id, "readFiles", paths=["data/notes.txt", "data/raw.bin"])
    resources = [block["resource"] for block in read["content"]]
    assert [block["type"] for block in read["content"]] == ["resource", "resource"]
    assert resources[0]["text"] == "héllo"
    assert resources[1]["blob"] == b"\x00\xffbinary"

    listed = await invoke(client, session_id, "listFiles", directoryPath="data")
    assert {(block["type"], block["name"], block.get("size")) for block in listed["content"]} == {
        ("resource_link", "notes.txt", len("héllo".encode())),
        ("resource_link", "raw.bin", 8),
    }
    code = await invoke(client, session_id, "executeCode", code="print(open('data/notes.txt').read())")
    assert code["structuredContent"]["stdout"] == "héllo\n"

    await invoke(client, session_id, "removeFiles", paths=["data/raw.bin"])
    listed = await invoke(client, session_id, "listFiles", directoryPath="data")
    assert [block["name"] for block in listed["content"]] == ["notes.txt"]
    missing = await invoke(client, session_id, "readFiles", paths=["data/raw.bin"])
    assert missing["isError"]


async def test_execute_command_reports_output_and_exit_code(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client)
    ok = await invoke(client, session_id, "executeCommand", command="echo hello; echo oops >&2")
    assert (ok["isError"], ok["structuredContent"]["stdout"], ok["structuredContent"]["stderr"]) == (
        False,
        "hello\n",
        "oops\n",
    )
    failed = await invoke(client, session_id, "executeCommand", command="exit 3")
    assert failed["isError"]
    assert failed["structuredContent"]["exitCode"] == 3


async def test_sessions_do_not_share_state(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    first, second = await start(client), await start(client)
    await invoke(client, first, "executeCode", code="secret = 'first'")
    await invoke(client, first, "writeFiles", content=[{"path": "only-first.txt", "text": "x"}])
    result = await invoke(client, second, "executeCode", code="print('secret' in globals())")
    assert result["structuredContent"]["stdout"] == "False\n"
    listed = await invoke(client, second, "listFiles", directoryPath=".")
    assert "only-first.txt" not in [block["name"] for block in listed["content"]]


async def test_a_session_ends_after_its_timeout(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, _ = emulator
    session_id = await start(client, sessionTimeoutSeconds=1)
    with anyio.fail_after(10):
        while True:
            described = await blocking(
                client.get_code_interpreter_session, codeInterpreterIdentifier=INTERPRETER, sessionId=session_id
            )
            if described["status"] == "TERMINATED":
                break
            await anyio.sleep(0.2)


async def test_the_same_client_token_starts_one_session(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, running = emulator
    token = "t" * 40
    first, second = await start(client, clientToken=token), await start(client, clientToken=token)
    assert first == second
    assert len(running.service.sessions) == 1


async def test_injected_throttling_is_retried_by_botocore(emulator: tuple[Any, AgentCoreEmulator]) -> None:
    client, running = emulator
    session_id = await start(client)
    running.faults.append(Fault("ThrottlingException"))

    def call() -> dict[str, Any]:
        response: dict[str, Any] = client.invoke_code_interpreter(
            codeInterpreterIdentifier=INTERPRETER, sessionId=session_id, name="executeCode", arguments={"code": "1"}
        )
        list(response["stream"])
        return response

    response = await blocking(call)
    assert response["ResponseMetadata"]["RetryAttempts"] == 1


async def test_an_error_inside_the_stream_reaches_boto3_as_the_modelled_exception(
    emulator: tuple[Any, AgentCoreEmulator],
) -> None:
    client, running = emulator
    session_id = await start(client)
    running.faults.append(Fault("ThrottlingException", where="stream", message="slow down"))
    with pytest.raises(EventStreamError) as caught:
        await invoke(client, session_id, "executeCode", code="1")
    assert caught.value.response["Error"] == {"Code": "throttlingException", "Message": "slow down"}


async def test_the_bedrock_agentcore_sdk_works_against_the_emulator(
    emulator: tuple[Any, AgentCoreEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_agentcore.tools import code_interpreter_client as sdk

    client, _ = emulator
    # The SDK reads its endpoint override from BEDROCK_AGENTCORE_DP_ENDPOINT when it is imported.
    monkeypatch.setattr(sdk, "DP_ENDPOINT_OVERRIDE", client.meta.endpoint_url)
    session = boto3.Session(aws_access_key_id="emulator", aws_secret_access_key="emulator", region_name="us-east-1")

    def flow() -> list[Any]:
        interpreter = sdk.CodeInterpreter("us-east-1", session=session)
        interpreter.start()
        try:
            interpreter.execute_code("import math\nanswer = math.factorial(5)")
            events = list(interpreter.execute_code("print(answer)")["stream"])
            events += list(interpreter.execute_command("echo from-shell")["stream"])
            return events
        finally:
            interpreter.stop()

    events = await blocking(flow)
    assert [event["result"]["structuredContent"]["stdout"] for event in events] == ["120\n", "from-shell\n"]


def test_event_stream_frames_parse_with_botocore_and_carry_valid_checksums() -> None:
    frames = encode_event("result", {"content": [{"type": "text", "text": "ü"}]}) + encode_exception(
        "throttlingException", "slow"
    )
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    messages = list(buffer)
    assert [message.headers[":message-type"] for message in messages] == ["event", "exception"]
    assert messages[0].headers[":event-type"] == "result"
    assert messages[1].headers[":exception-type"] == "throttlingException"

    corrupt = bytearray(encode_event("result", {}))
    corrupt[-5] ^= 0xFF  # a payload byte: the message CRC no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
    total, headers_length = struct.unpack(">II", bytes(corrupt[:8]))
    assert total == len(corrupt) and headers_length > 0


def test_the_emulator_refuses_to_listen_beyond_loopback() -> None:
    from ptc_mcp.emulators.agentcore import _loopback_socket

    with pytest.raises(ValueError, match="loopback"):
        _loopback_socket("0.0.0.0", 0)
