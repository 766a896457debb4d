"""The Python language worker of the emulated Functions host: a process of its own that loads
`function_app.py` and runs the invocations the host sends it, as the real worker does.

It builds each function's input the way the real worker does (a `func.HttpRequest`; the Service
Bus message through the library's own `ServiceBusMessageInConverter` from the body and the
trigger metadata the host sends; a batch, `cardinality="many"`, through the same converter
from the TypedData the host sends for one: the bodies as `json`, `collection_bytes` or
`collection_string` and the `...Array` metadata, each turned into a `meta.Datum` as the
worker's `Datum.from_typed_data` does, a collection keeping its protobuf shape, its values
under `.bytes`, `.string` or `.sint64`; the converter's `decode_multiple_messages` then
builds the list, azure-functions-python-library `azure/functions/servicebus.py`), runs
invocations on a thread pool (`PYTHON_THREADPOOL_THREAD_COUNT`), and answers each with its
result or its error. Service Bus calls made by the app reach the emulated namespace of the
host's process. When this process dies, every invocation running in it dies with it, BLAST
included (parent-death signal).

Usage: python language_worker.py APP_DIR HOST_PORT NAMESPACE_PORT, with the connection keys
in the environment (EMULATED_HOST_KEY, EMULATED_NAMESPACE_KEY, hex).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.functions.timer import TimerRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emulation import servicebus


def load_app(app_dir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location("function_app", app_dir / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


def servicebus_input(payload: dict[str, Any]) -> Any:
    """What the worker hands a Service Bus trigger: the library's converter applied to the
    body and trigger metadata the host sent (names and types as the host sends them)."""
    kinds = {"DeliveryCount": "int", "SequenceNumber": "int", "ApplicationProperties": "json",
             "UserProperties": "json"}
    metadata = {name: meta.Datum(json.dumps(value) if kinds.get(name) == "json" else value,
                                 kinds.get(name, "string"))
                for name, value in payload["metadata"].items()}
    return ServiceBusMessageInConverter.decode(meta.Datum(payload["body"], "bytes"),
                                               trigger_metadata=metadata)


COLLECTION_FIELDS = {"collection_bytes": "bytes", "collection_string": "string",
                     "collection_sint64": "sint64", "collection_double": "double"}


class Collection:
    """A TypedData collection as the worker's protobuf message has it (`CollectionString`
    and the others): its values in one repeated field."""

    def __init__(self, field: str, values: list[Any]):
        setattr(self, field, list(values))


def typed_datum(typed: dict[str, Any]) -> meta.Datum:
    """`Datum.from_typed_data`: the value of the TypedData's case, under the case's name."""
    kind, value = typed["type"], typed["value"]
    if kind in COLLECTION_FIELDS:
        value = Collection(COLLECTION_FIELDS[kind], value)
    return meta.Datum(value, kind)


def servicebus_batch_input(payload: dict[str, Any]) -> Any:
    """What the worker hands a batch trigger: the library's converter applied to the body
    collection and the trigger metadata arrays the host sent."""
    metadata = {name: typed_datum(typed) for name, typed in payload["metadata"].items()}
    return ServiceBusMessageInConverter.decode(typed_datum(payload["data"]),
                                               trigger_metadata=metadata)


def http_input(payload: dict[str, Any]) -> func.HttpRequest:
    return func.HttpRequest(payload["method"], payload["url"], headers=payload["headers"],
                            params=payload["params"], route_params=payload["route_params"],
                            body=payload["body"])


def run(function: Any, kind: str, payload: dict[str, Any]) -> Any:
    user_function = function.get_user_function()
    if kind == "http":
        response = user_function(http_input(payload))
        return {"status": response.status_code, "headers": dict(response.headers),
                "body": response.get_body()}
    if kind == "servicebus":
        return user_function(servicebus_input(payload))
    if kind == "servicebus-batch":
        return user_function(servicebus_batch_input(payload))
    if kind == "timer":
        return user_function(TimerRequest(past_due=False))
    raise ValueError(f"unknown trigger kind {kind!r}")


def main() -> None:
    app_dir, host_port, namespace_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s worker[%(process)d] %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    servicebus.install(servicebus.RemoteNamespace(
        ("127.0.0.1", namespace_port), bytes.fromhex(os.environ["EMULATED_NAMESPACE_KEY"])))
    functions = load_app(app_dir)
    host = Client(("127.0.0.1", host_port), authkey=bytes.fromhex(os.environ["EMULATED_HOST_KEY"]))
    sending = threading.Lock()

    def reply(message: tuple) -> None:
        with sending:
            host.send(message)

    index = {name: json.loads(f.get_function_json()) for name, f in functions.items()}
    reply(("ready", os.getpid(), index))

    def invoke(invocation_id: str, name: str, kind: str, payload: dict[str, Any]) -> None:
        try:
            reply(("result", invocation_id, True, run(functions[name], kind, payload)))
        except Exception as error:
            logging.getLogger("worker").warning("invocation %s of %s failed: %s", invocation_id,
                                                name, error)
            reply(("result", invocation_id, False,
                   "".join(traceback.format_exception_only(error)).strip()))

    threads = int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or min(32, (os.cpu_count() or 1) + 4))
    with ThreadPoolExecutor(threads, thread_name_prefix="invocation") as pool:
        while True:
            try:
                message = host.recv()
            except (EOFError, OSError):
                os._exit(0)  # the host is gone: so is its worker
            pool.submit(invoke, *message[1:])


if __name__ == "__main__":
    main()
