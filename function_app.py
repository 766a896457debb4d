"""Azure Functions bindings only; all behaviour lives in `blast_core`. Importing this reads
one setting, the queue transport the trigger binds to: every other setting is checked where
it is used, so a bad one cannot keep the functions from loading (`/api/health` names it)."""

import azure.functions as func

from blast_core.api import routes
from blast_core.hosts import azure_functions
from blast_core.settings import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, binding_transport

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for route in routes.ROUTES:
    app.function_name(route.name)(app.route(
        route=route.template, methods=[route.method],
        auth_level=func.AuthLevel.ANONYMOUS if route.anonymous else func.AuthLevel.FUNCTION,
    )(azure_functions.http_function(route)))


@app.timer_trigger(arg_name="timer", schedule=azure_functions.CLEANUP_SCHEDULE, run_on_startup=False)
def cleanup_expired_jobs(timer: func.TimerRequest) -> None:
    azure_functions.clean_up_expired()


@app.timer_trigger(arg_name="timer", schedule=azure_functions.SWEEP_SCHEDULE, run_on_startup=False)
def sweep_stranded_jobs(timer: func.TimerRequest) -> None:
    azure_functions.sweep_stranded()


# Two lanes, each a queue with its own trigger, so that a quick search never waits behind
# bulk work. The interactive lane takes its messages in batches, whose searches one BLAST
# process runs together (host.json maxMessageBatchSize); a bulk batch is a search's worth alone.
# A batch's bodies are bound as bytes: without a dataType the host re-serializes them as JSON.
if binding_transport() == "servicebus":

    @app.service_bus_queue_trigger(arg_name="msgs", queue_name="%BLAST_QUEUE_NAME%",
                                   connection=SERVICEBUS_CONNECTION,
                                   cardinality=func.Cardinality.MANY,
                                   data_type=func.DataType.BINARY)
    def blast_worker(msgs: list[func.ServiceBusMessage]) -> None:
        azure_functions.process_deliveries([(m.get_body(), m.delivery_count) for m in msgs])

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%BLAST_BULK_QUEUE_NAME%",
                                   connection=SERVICEBUS_CONNECTION)
    def blast_bulk_worker(msg: func.ServiceBusMessage) -> None:
        azure_functions.process_delivery(msg.get_body(), msg.delivery_count)

else:

    @app.queue_trigger(arg_name="msg", queue_name="%BLAST_QUEUE_NAME%",
                       connection=STORAGE_CONNECTION)
    def blast_worker(msg: func.QueueMessage) -> None:
        azure_functions.process_delivery(msg.get_body(), msg.dequeue_count)

    @app.queue_trigger(arg_name="msg", queue_name="%BLAST_BULK_QUEUE_NAME%",
                       connection=STORAGE_CONNECTION)
    def blast_bulk_worker(msg: func.QueueMessage) -> None:
        azure_functions.process_delivery(msg.get_body(), msg.dequeue_count)
