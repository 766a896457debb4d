"""The deployment (infra/, host.json) against the settings the code reads.

The Bicep is read as text: its syntax is checked by infra/check.sh (pycep-parser, checkov),
which lives in its own virtualenv.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from blast_core.blast import version
from blast_core.domain import limits
from blast_core.domain.limits import RunLimits
from blast_core.settings import SERVICEBUS_CONNECTION, SETTINGS, STORAGE_CONNECTION, Settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
DEFAULTS = {s.name: s.default for s in SETTINGS}

# App settings of the platform and the Functions host, not of blast_core.
HOST_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage__accountName",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}

# Identity-based forms of the two connections (settings.Connection reads `<NAME>__<property>`).
CONNECTION_PROPERTIES = {
    STORAGE_CONNECTION: {"blobServiceUri", "tableServiceUri", "queueServiceUri"},
    SERVICEBUS_CONNECTION: {"fullyQualifiedNamespace"},
}

# Settings the deployment leaves at the code's default, and why.
LEFT_AT_DEFAULT = {
    "BLAST_AZURITE_DIR": "serve only: the folder of the Azurite it starts when no storage is set",
    "BLAST_MAX_INLINE_RESULT_BYTES": "a limit of what passes through an HTTP function; larger "
                                     "results are links into Blob storage",
    "BLAST_API_KEY": "serve only; in Azure function keys guard the routes",
    "BLAST_VISIBILITY_TIMEOUT": "the Storage Queue worker of serve only",
    "BLAST_RESULT_LINK_HOURS": "24 h is within the 7-day limit of user delegation SAS",
    "BLAST_MAX_QUERY_BYTES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_QUERIES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_HEADER_CHARS": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_SEQUENCE_LETTERS": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_SUBJECT_BYTES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_SUBJECTS": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_UPLOAD_BYTES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_MAX_UPLOAD_QUERIES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_UPLOAD_LINK_MINUTES": "request limits: change them with the extraAppSettings parameter",
    "BLAST_BATCH_LETTERS": "the per-program defaults suit the plans; extraAppSettings overrides them",
    "BLAST_PRICE_PER_CORE_SECOND": "a price for cost estimates only; the default is the EP list "
                                   "price per core, extraAppSettings sets a region's",
    "BLAST_DB_PRELOAD": "staging (BLAST_DB_CACHE_DIR) already reads each database once per instance, "
                        "leaving it in the page cache; pre-reading pays only without a cache",
    "BLAST_CLEANUP_SECONDS": "serve only; in Azure the timer function cleanup_expired_jobs runs hourly",
    "BLAST_CANCEL_CHECK_SECONDS": "the default suits the Functions host: a 3 s Table read per running "
                                  "batch is cheap",
    "BLAST_COALESCE_MESSAGES": "serve and worker only; under the Functions host, host.json "
                               "maxMessageBatchSize is how many messages arrive at once",
    "BLAST_INTERACTIVE_LETTERS": "the lanes' threshold: the default suits the interactive batch of "
                                 "host.json maxMessageBatchSize; extraAppSettings changes it",
}


FUNCTION_APP = INFRA / "modules" / "functionapp.bicep"
SERVICE_BUS = INFRA / "modules" / "servicebus.bicep"
DOCKERFILE = ROOT / "Dockerfile"

# The two lanes' queues: servicebus.bicep resource, the parameter naming it (in main.bicep and
# in every module that takes it), and the app setting that is its name in the code.
QUEUES = {
    "queue": ("queueName", "BLAST_QUEUE_NAME"),
    "bulkQueue": ("bulkQueueName", "BLAST_BULK_QUEUE_NAME"),
}


def dockerfile_arg(name: str) -> str:
    """The default of `ARG <name>=...` in the Dockerfile."""
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"Dockerfile: no ARG {name} with a default"
    return match.group(1)


def bicep_object_var(text: str, name: str) -> dict[str, str]:
    """Key -> Bicep expression of `var <name> = { ... }`, an object of one-line values."""
    block = re.search(rf"^var {name} = \{{\n(.*?)^\}}$", text, re.MULTILINE | re.DOTALL)
    assert block, f"no `var {name} = {{ ... }}` object"
    return dict(re.findall(r"^  '?([A-Za-z_][A-Za-z0-9_]*)'?: (.+)$", block.group(1), re.MULTILINE))


def app_settings_union() -> list[str]:
    """The arguments of `var appSettings = union(...)`, in order (later ones win)."""
    union = re.search(r"^var appSettings = union\((.*)\)$", FUNCTION_APP.read_text(), re.MULTILINE)
    assert union, "functionapp.bicep: no one-line `var appSettings = union(...)`"
    return [argument.strip() for argument in union.group(1).split(",")]


def deployment_settings(container: bool) -> dict[str, str]:
    """Name -> Bicep expression of the settings that functionapp.bicep's map gives the app for
    one value of blastSource (`useContainer`), object variables resolved."""
    text = FUNCTION_APP.read_text()
    settings: dict[str, str] = {}
    for argument in app_settings_union():
        branch = re.fullmatch(r"useContainer \? (\w+) : (\w+)", argument)
        if branch:
            argument = branch.group(1) if container else branch.group(2)
        if re.search(rf"^var {argument} = \{{$", text, re.MULTILINE):
            settings.update(bicep_object_var(text, argument))
    return settings


def app_settings() -> dict[str, str]:
    """Name -> Bicep expression of every app setting functionapp.bicep writes, either way."""
    settings = deployment_settings(container=True) | deployment_settings(container=False)
    assert settings, "functionapp.bicep: no app settings found"
    # The one setting that holds a key is written apart from the map.
    keyed = re.search(r"^var contentShareConnection = \{\n\s+name: '(\w+)'\n\s+value: (.+)$",
                      FUNCTION_APP.read_text(), re.MULTILINE)
    assert keyed, "functionapp.bicep: no `var contentShareConnection` setting"
    settings[keyed.group(1)] = keyed.group(2)
    return settings


def bicep_params(path: Path) -> dict[str, tuple[str | None, dict[str, str]]]:
    """Name -> (default expression, single-line decorators) of each `param` in a Bicep file."""
    params = {}
    pattern = r"((?:^@[^\n]*\n)*)^param (\w+) \w+(?: = ([^\n]+))?$"
    for decorators, name, default in re.findall(pattern, path.read_text(), re.MULTILINE):
        params[name] = (default or None, dict(re.findall(r"^@(\w+)\((.*)\)$", decorators, re.MULTILINE)))
    return params


def bicep_module_params(path: Path, module: str) -> dict[str, str]:
    """Name -> Bicep expression of each single-line parameter that `path` passes to `module`."""
    block = re.search(rf"^module {module} '[^']+' = (?:if \(.*\) )?\{{\n(.*?)^\}}$", path.read_text(),
                      re.MULTILINE | re.DOTALL)
    assert block, f"{path.name}: no module {module}"
    params = re.search(r"^  params: \{\n(.*?)^  \}$", block.group(1), re.MULTILINE | re.DOTALL)
    assert params, f"{path.name}: module {module} has no params block"
    return dict(re.findall(r"^    (\w+): (.+)$", params.group(1), re.MULTILINE))


def bicep_resources(text: str, type_: str) -> dict[str, tuple[str, str]]:
    """Symbolic name -> (condition or '', body) of each top-level `resource` of a type."""
    pattern = (rf"^resource (\w+) '{re.escape(type_)}@[\w-]+'(?: existing)? = "
               r"(?:if \(([^\n]*)\) )?\{\n(.*?)^\}$")
    return {name: (condition, body) for name, condition, body in
            re.findall(pattern, text, re.MULTILINE | re.DOTALL)}


def role_assignments(text: str) -> set[tuple[str, str, str]]:
    """(scope, role id, condition) of each role assignment in a Bicep file with a `roleIds` map."""
    granted = set()
    for condition, body in bicep_resources(text, "Microsoft.Authorization/roleAssignments").values():
        scope = re.search(r"^  scope: (\w+)$", body, re.MULTILINE).group(1)
        role = re.search(r"roleDefinitionId: .*roleIds\.(\w+)\)$", body, re.MULTILINE).group(1)
        role_id = re.search(rf"^  {role}: '([0-9a-f-]+)'$", text, re.MULTILINE).group(1)
        # One assignment per (scope, principal, role): its name is derived from the three.
        assert re.search(rf"^  name: guid\({scope}\.id, principalId, roleIds\.{role}\)$", body,
                         re.MULTILINE), body
        granted.add((scope, role_id, condition))
    return granted


def bicep_string(expression: str) -> str:
    assert re.fullmatch(r"'[^']*'", expression), f"not a string literal: {expression}"
    return expression[1:-1]


def host_json() -> dict:
    return json.loads((ROOT / "host.json").read_text())


def seconds(timespan: str) -> int:
    """host.json timespans: `hh:mm:ss` or `d.hh:mm:ss`."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d\d):(\d\d)", timespan)
    assert match, f"not a timespan: {timespan}"
    days, hours, minutes, secs = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def test_every_setting_written_is_one_the_code_or_the_host_reads() -> None:
    unknown = []
    for name in app_settings():
        if name in HOST_SETTINGS or name in DEFAULTS or name.startswith("AzureFunctionsJobHost__"):
            continue
        connection, _, prop = name.partition("__")
        if prop not in CONNECTION_PROPERTIES.get(connection, ()):
            unknown.append(name)
    assert not unknown, f"functionapp.bicep writes settings nobody reads: {unknown}"


def test_every_setting_the_code_reads_is_written_or_left_at_its_default_on_purpose() -> None:
    written = set(app_settings())
    for connection, properties in CONNECTION_PROPERTIES.items():
        if any(f"{connection}__{p}" in written for p in properties):
            written.add(connection)
    missing = set(DEFAULTS) - written - set(LEFT_AT_DEFAULT)
    assert not missing, f"settings the code reads that functionapp.bicep does not write: {missing}"
    assert set(LEFT_AT_DEFAULT) <= set(DEFAULTS), "LEFT_AT_DEFAULT names a setting that is gone"
    assert not set(LEFT_AT_DEFAULT) & written, "LEFT_AT_DEFAULT names a setting that is written"


def test_connections_use_the_managed_identity() -> None:
    settings = app_settings()
    assert STORAGE_CONNECTION not in settings and SERVICEBUS_CONNECTION not in settings
    # The app stores results and job records; the queue of the storage transport is unused.
    assert {f"{STORAGE_CONNECTION}__blobServiceUri", f"{STORAGE_CONNECTION}__tableServiceUri",
            f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace", "AzureWebJobsStorage__accountName",
            } <= set(settings)
    assert bicep_string(settings["BLAST_QUEUE_TRANSPORT"]) == "servicebus"


def test_host_json_overrides_name_existing_host_json_settings() -> None:
    for name in app_settings():
        if not name.startswith("AzureFunctionsJobHost__"):
            continue
        node = host_json()
        for key in name.split("__")[1:]:
            matches = [k for k in node if k.lower() == key.lower()]
            assert matches, f"{name}: host.json has no {key!r} there"
            node = node[matches[0]]


def test_bicep_defaults_are_the_code_defaults() -> None:
    main = bicep_params(INFRA / "main.bicep")
    storage = bicep_params(INFRA / "modules" / "storage.bicep")
    servicebus = bicep_params(INFRA / "modules" / "servicebus.bicep")
    for param, setting in QUEUES.values():
        assert bicep_string(main[param][0]) == DEFAULTS[setting], param
        assert bicep_string(servicebus[param][0]) == DEFAULTS[setting], param
    assert bicep_string(main["dbMountPath"][0]) == DEFAULTS["BLAST_DB_DIR"]
    assert main["blastThreads"][0] == DEFAULTS["BLAST_THREADS"]
    assert main["blastTimeLimitSeconds"][0] == DEFAULTS["BLAST_TIME_LIMIT"]
    assert bicep_string(storage["resultsContainerName"][0]) == DEFAULTS["BLAST_RESULTS_CONTAINER"]
    assert bicep_string(storage["jobsTableName"][0]) == DEFAULTS["BLAST_JOBS_TABLE"]


def test_parameters_file_names_real_parameters_with_the_code_defaults() -> None:
    values = {name: p["value"] for name, p in
              json.loads((INFRA / "main.parameters.json").read_text())["parameters"].items()}
    assert set(values) <= set(bicep_params(INFRA / "main.bicep"))
    mirrored = {"queueName": "BLAST_QUEUE_NAME", "bulkQueueName": "BLAST_BULK_QUEUE_NAME",
                "dbMountPath": "BLAST_DB_DIR",
                "blastThreads": "BLAST_THREADS", "blastTimeLimitSeconds": "BLAST_TIME_LIMIT",
                "maxDeliveryCount": "BLAST_MAX_DELIVERIES", "retentionDays": "BLAST_RETENTION_DAYS"}
    for param, setting in mirrored.items():
        if param in values:
            assert str(values[param]) == DEFAULTS[setting], param


def test_host_json_and_the_queue_hold_the_limits_the_code_derives_from() -> None:
    """blast_core/domain/limits.py is the one place the time limits come from: host.json, the
    queue's lock and time to live, and the most BLAST_TIME_LIMIT a deployment may set must
    be the numbers it derives from."""
    host = host_json()
    assert seconds(host["functionTimeout"]) == limits.FUNCTION_TIMEOUT <= limits.SCALE_IN_GRACE
    assert seconds(host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]) == \
        limits.FUNCTION_TIMEOUT, "the host must hold the lock as long as an invocation runs"
    most = RunLimits.derive(int(DEFAULTS["BLAST_TIME_LIMIT"]), {})
    for path in (INFRA / "main.bicep", FUNCTION_APP):
        assert int(bicep_params(path)["blastTimeLimitSeconds"][1]["maxValue"]) == \
            limits.FUNCTION_TIMEOUT - most.finish_reserve, path
    queue = (INFRA / "modules" / "servicebus.bicep").read_text()
    assert "lockDuration: 'PT5M'" in queue and limits.LOCK_DURATION == 5 * 60
    for path in (INFRA / "main.bicep", INFRA / "modules" / "servicebus.bicep"):
        assert bicep_params(path)["messageTimeToLive"][0] == "'P1D'", path
    assert limits.MESSAGE_TTL == 24 * 3600


def test_queue_max_delivery_count_is_the_max_deliveries_setting() -> None:
    max_deliveries = DEFAULTS["BLAST_MAX_DELIVERIES"]
    assert bicep_params(INFRA / "main.bicep")["maxDeliveryCount"][0] == max_deliveries
    assert bicep_params(INFRA / "modules" / "servicebus.bicep")["maxDeliveryCount"][0] == max_deliveries
    assert str(host_json()["extensions"]["queues"]["maxDequeueCount"]) == max_deliveries
    assert app_settings()["BLAST_MAX_DELIVERIES"] == "string(maxDeliveryCount)"


def test_job_queue_properties() -> None:
    """Both lanes' queues have every property of the job queue, the same object: they differ
    in name only."""
    text = SERVICE_BUS.read_text()
    for line in ("lockDuration: 'PT5M'", "maxDeliveryCount: maxDeliveryCount",
                 "deadLetteringOnMessageExpiration: true", "requiresDuplicateDetection: true",
                 "duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow",
                 "defaultMessageTimeToLive: messageTimeToLive", "disableLocalAuth: true"):
        assert re.search(rf"^\s+{re.escape(line)}$", text, re.MULTILINE), line
    properties = bicep_object_var(text, "queueProperties")
    assert properties["lockDuration"] == "'PT5M'" and properties["requiresSession"] == "false"
    queues = bicep_resources(text, "Microsoft.ServiceBus/namespaces/queues")
    assert set(queues) == set(QUEUES), f"servicebus.bicep: queues {sorted(queues)}"
    for resource, (param, _) in QUEUES.items():
        condition, body = queues[resource]
        assert not condition, f"{resource} is deployed only sometimes"
        # The whole body: parent, name and the shared properties, nothing of its own.
        assert body == f"  parent: namespace\n  name: {param}\n  properties: queueProperties\n", body
        assert re.search(rf"^output {param} string = {resource}\.name$", text, re.MULTILINE), resource
    assert len({DEFAULTS[setting] for _, setting in QUEUES.values()}) == len(QUEUES), \
        "the lanes' default queue names are the same queue"


def test_each_lane_s_queue_reaches_the_app_setting_the_code_reads() -> None:
    """main.bicep's queue parameters name the queues servicebus.bicep creates, and the app
    settings carry the created queues' names; a trigger binding %SETTING% needs that setting
    in every deployment, or the host cannot index the function."""
    main_path = INFRA / "main.bicep"
    to_bus = bicep_module_params(main_path, "serviceBus")
    to_app = bicep_module_params(main_path, "functionApp")
    settings = app_settings()
    for param, setting in QUEUES.values():
        assert to_bus[param] == param, f"main.bicep does not pass {param} to servicebus.bicep"
        assert to_app[param] == f"serviceBus.outputs.{param}", param
        assert settings[setting] == param, f"{setting} is not the {param} parameter"
    bindings = (ROOT / "function_app.py").read_text()
    bound = set(re.findall(r"%(\w+)%", bindings))
    assert {setting for _, setting in QUEUES.values()} <= bound, "a lane has no trigger"
    unwritten = bound - set(settings)
    assert not unwritten, f"function_app.py binds settings no deployment writes: {unwritten}"


def test_the_app_holds_the_same_service_bus_roles_on_both_queues() -> None:
    """Roles are granted per queue, not on the namespace, so the bulk queue needs every role
    the interactive one has: Sender (submit), Receiver (its trigger) and, with
    accurateScaleMetrics, Data Owner (Manage: target-based scaling reads its length)."""
    main_path = INFRA / "main.bicep"
    text = (INFRA / "modules" / "roles.bicep").read_text()
    passed = bicep_module_params(main_path, "roles")
    existing = bicep_resources(text, "Microsoft.ServiceBus/namespaces/queues")
    granted = role_assignments(text)
    by_queue = {resource: {(role, condition) for scope, role, condition in granted if scope == resource}
                for resource in QUEUES}
    for resource, (param, _) in QUEUES.items():
        assert passed[param] == f"serviceBus.outputs.{param}", param
        assert existing[resource][1] == f"  parent: namespace\n  name: {param}\n", resource
    assert by_queue["queue"] == by_queue["bulkQueue"], by_queue
    assert by_queue["queue"] == {
        ("69a216fc-b8fb-44d8-bc22-1f3c2cd27a39", ""),  # Azure Service Bus Data Sender
        ("4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", ""),  # Azure Service Bus Data Receiver
        ("090c5cfd-751d-490a-894a-3ce6f1109419", "accurateScaleMetrics"),  # Data Owner
    }
    assert not {scope for scope, _, _ in granted} & {"namespace"}, "a role on the whole namespace"


def test_result_lifecycle_rule_expires_blobs_after_the_retention_setting() -> None:
    main_path = INFRA / "main.bicep"
    main = bicep_params(main_path)
    default, decorators = main["retentionDays"]
    assert default == DEFAULTS["BLAST_RETENTION_DAYS"]
    assert decorators.get("minValue") == "0", "retentionDays 0 keeps jobs forever"
    # The one main.bicep parameter feeds both the app setting and the lifecycle rule.
    to_app = [name for name, value in bicep_module_params(main_path, "functionApp").items()
              if value == "retentionDays"]
    to_storage = [name for name, value in bicep_module_params(main_path, "storage").items()
                  if value == "retentionDays"]
    assert len(to_app) == 1 and len(to_storage) == 1, "retentionDays is not passed to both modules"
    assert app_settings()["BLAST_RETENTION_DAYS"] == f"string({to_app[0]})"
    days = to_storage[0]

    storage_path = INFRA / "modules" / "storage.bicep"
    assert bicep_params(storage_path)[days][1].get("minValue") == "0"
    text = storage_path.read_text()
    policy = re.search(r"^resource \w+ 'Microsoft\.Storage/storageAccounts/managementPolicies@[\d-]+' = "
                       r"if \((\w+) > 0\) \{\n(.*?)^\}$", text, re.MULTILINE | re.DOTALL)
    assert policy, "storage.bicep: no managementPolicies resource deployed only when retention > 0"
    condition, body = policy.groups()
    assert condition == days, "the lifecycle rule is switched on by another parameter"
    assert re.search(r"^  name: 'default'$", body, re.MULTILINE)
    rules = re.findall(r"^\s+name: '[^']+'\n\s+enabled: true\n\s+type: 'Lifecycle'$", body, re.MULTILINE)
    assert len(rules) == 1, "expected one enabled Lifecycle rule"
    # Block blobs under the results container (`<job id>/...`), deleted by age from creation.
    container = re.search(r"^resource (\w+) 'Microsoft\.Storage/storageAccounts/blobServices/containers@"
                          r"[\d-]+' = \{\n(?:.*\n)*?  name: (\w+)$", text, re.MULTILINE)
    assert container, "storage.bicep: no blob container"
    assert re.search(rf"^output resultsContainerName string = {container.group(1)}\.name$", text,
                     re.MULTILINE)
    prefix = re.search(r"^\s+prefixMatch: \[\n\s+'([^']*)'\n\s+\]$", body, re.MULTILINE)
    assert prefix and prefix.group(1) == f"${{{container.group(2)}}}/", "prefix is not the results container"
    assert re.search(r"^\s+blobTypes: \[\n\s+'blockBlob'\n\s+\]$", body, re.MULTILINE)
    delete = re.search(r"^\s+baseBlob: \{\n\s+delete: \{\n\s+daysAfterCreationGreaterThan: (.+)\n\s+\}",
                       body, re.MULTILINE)
    assert delete, "the rule does not delete base blobs by days after creation"
    assert delete.group(1) == days, f"the rule's days are {delete.group(1)}, not the retention parameter"


def test_code_deployments_are_built_on_the_server() -> None:
    """A zip deployment (azd deploy, func azure functionapp publish) of blastSource share is
    only installed with its requirements when the server builds it, and a remote build on
    Linux needs both settings ("App settings reference for Azure Functions", ENABLE_ORYX_BUILD;
    azd's core/host Bicep modules set both). The image of blastSource container is built
    elsewhere."""
    code = deployment_settings(container=False)
    for name in ("SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD"):
        assert code.get(name) == "'true'", f"the code deployment does not set {name} to 'true'"
    container = deployment_settings(container=True)
    assert not {"SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD"} & set(container)
    assert container.get("WEBSITES_ENABLE_APP_SERVICE_STORAGE") == "'false'"


def test_app_settings_set_outside_the_template_survive_a_redeployment() -> None:
    """siteConfig.appSettings replaces the app's whole set on every deployment, so a setting
    added by hand (a request limit, a region's price) would be wiped by the next one: the
    extraAppSettings parameter carries them through main.bicep into the map, first in the
    union so that the settings the template writes keep their values."""
    main_path = INFRA / "main.bicep"
    assert bicep_params(main_path)["extraAppSettings"][0] == "{}"
    assert bicep_params(FUNCTION_APP)["extraAppSettings"][0] == "{}"
    assert bicep_module_params(main_path, "functionApp").get("extraAppSettings") == "extraAppSettings"
    union = app_settings_union()
    assert union[0] == "extraAppSettings" and "extraAppSettings" not in union[1:], union
    # Values become strings, so {"BLAST_MAX_QUERIES": 50000} works as well as "50000".
    assert re.search(r"^  value: string\(setting\.value\)$", FUNCTION_APP.read_text(), re.MULTILINE)


def test_both_deployment_paths_run_the_same_python_on_a_supported_debian() -> None:
    """blastSource container runs the Functions image's Python, blastSource share the
    linuxFxVersion one: the same, or code tested on one can break on the other. Functions'
    Python images up to 3.11 are Debian bullseye, whose LTS ended on 2026-08-31; 3.12 is built
    on bookworm (Azure/azure-functions-docker host/4/python-build.yml)."""
    base = re.search(r"^FROM mcr\.microsoft\.com/azure-functions/python:4-python(\d+)\.(\d+)$",
                     DOCKERFILE.read_text(), re.MULTILINE)
    assert base, "Dockerfile: not FROM mcr.microsoft.com/azure-functions/python:4-pythonX.Y"
    code = re.search(r"'Python\|(\d+)\.(\d+)'", FUNCTION_APP.read_text())
    assert code, "functionapp.bicep: no linuxFxVersion 'Python|X.Y'"
    assert base.groups() == code.groups(), f"image Python {base.groups()}, code Python {code.groups()}"
    assert tuple(int(part) for part in base.groups()) >= (3, 12), "a bullseye image"
    assert dockerfile_arg("DEBIAN_CODENAME") == "bookworm"


def test_one_blast_release_for_every_deployment_path() -> None:
    """The image installs Debian's package of version.VERSION, infra/README has operators
    upload NCBI's build of it to the share, and names no other release."""
    release = version.VERSION
    assert dockerfile_arg("NCBI_BLAST_DEBIAN_VERSION") == version.DEBIAN_PACKAGE_VERSION
    assert version.DEBIAN_PACKAGE_VERSION.startswith(f"{release}+")
    readme = (INFRA / "README.md").read_text()
    assert version.NCBI_LINUX_TARBALL in readme, "infra/README does not upload NCBI's build"
    named = (re.findall(r"ncbi-blast-(\d+\.\d+\.\d+)\+", readme)
             + re.findall(r"blast\+/(\d+\.\d+\.\d+)/", readme)
             + re.findall(r"BLAST\+ (\d+\.\d+\.\d+)", readme)
             + re.findall(r"`(\d+\.\d+\.\d+)\+ds-", readme))
    assert named and set(named) == {release}, f"infra/README names BLAST+ {sorted(set(named))}"


def test_the_tests_run_the_blast_release_that_is_deployed() -> None:
    """Every search test compares with this machine's blastn: it must be the deployed release
    (Debian bookworm's ncbi-blast+ is version.DEBIAN_PACKAGE_VERSION)."""
    found = version.installed_version()
    assert found == version.VERSION, (
        f"blastn here is {found or 'missing'}, the deployment runs BLAST+ {version.VERSION}")
    assert version.installed_version("/nonexistent/blastn") is None


def core_tools_ignores(funcignore: str) -> Callable[[str], bool]:
    """How Azure Functions Core Tools reads .funcignore when it packages the app (its
    GitIgnoreParser.cs, a port of codemix/gitignore-parser): each pattern, regex-escaped with
    `**` as `(.+)` and `*` as `([^/]+)`, must match at the start of the path from the app root;
    a `!` pattern accepts again."""
    patterns: dict[bool, list[str]] = {True: [], False: []}
    for line in funcignore.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        patterns[negated].append(line[1:] if line.startswith("/") else line)

    def regex(lines: list[str]) -> re.Pattern[str]:
        prepared = [re.sub(r"[-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), line)
                    .replace("**", "(.+)").replace("*", "([^\\/]+)") for line in lines]
        return re.compile("^((" + ")|(".join(prepared) + "))") if prepared else re.compile("$^")

    denied, accepted = regex(patterns[False]), regex(patterns[True])
    return lambda path: bool(denied.match(path)) and not accepted.match(path)


def gitignore_ignored(funcignore: str, paths: list[str], workdir: Path) -> set[str]:
    """The paths that git's own .gitignore rules ignore with .funcignore as the .gitignore:
    how azd reads it ("Configure service packaging file exclusions")."""
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    (workdir / ".gitignore").write_text(funcignore)
    done = subprocess.run(["git", "-C", str(workdir), "-c", "core.excludesFile=/dev/null",
                           "check-ignore", "--no-index", "--stdin"],
                          input="\n".join(paths), capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr  # 1: nothing ignored
    return set(done.stdout.split())


def docker_ignores(dockerignore: str) -> Callable[[str], bool]:
    """How docker build reads .dockerignore ("Dockerfile reference", .dockerignore file; the
    patternmatcher of moby): each pattern matches a whole path from the context's root, `*`
    and `?` within one name, `**` any number of folders; a path is left out when it or a
    folder above it matches, and the last matching line decides (`!` keeps)."""
    rules = []
    for line in dockerignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = (line[1:] if keep else line).strip().strip("/")
        wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
        rules.append((keep, re.compile("".join(wildcards.get(token) or re.escape(token)
                                               for token in tokens))))

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for keep, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not keep
        return result

    return ignored


def test_the_code_package_leaves_out_caches_local_data_and_development_files(tmp_path) -> None:
    """Bytecode, Azurite's data (in .azurite with --location, or where it was started) and the
    rest of the development tree stay out of the code package, by Core Tools' reading of
    .funcignore and by azd's (gitignore), and out of the container image (.dockerignore); the
    app's own files all go in."""
    left_out = [
        "__pycache__/function_app.cpython-312.pyc", "function_app.pyc",
        "blast_core/__pycache__/settings.cpython-312.pyc",
        "blast_core/api/web/__pycache__/x.cpython-311.pyc", "blast_core/settings.pyc",
        ".azurite/__azurite_db_blob__.json", ".azurite/__blobstorage__/0a1b",
        "__azurite_db_blob__.json", "__azurite_db_queue_extent__.json", "__azurite_db_table__.json",
        "__blobstorage__/0a1b2c", "__queuestorage__/0a1b2c",
        ".python_packages/lib/site-packages/x.py", ".venv/bin/python", ".venv-infra/bin/checkov",
        "node_modules/azurite/package.json", "local.settings.json", "tests/test_infra.py",
        "infra/main.bicep", "docs/benchmarks.md", "test-artifacts/web-results.png",
        "demo-results/1.tsv", ".pytest_cache/README.md", "Dockerfile", ".github/workflows/ci.yml",
    ]
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "blast_core"], check=True,
                             capture_output=True, text=True).stdout.split()
    shipped = ["function_app.py", "host.json", "requirements.txt", *tracked]
    assert "blast_core/settings.py" in shipped
    funcignore = (ROOT / ".funcignore").read_text()

    core_tools = core_tools_ignores(funcignore)
    assert [p for p in left_out if not core_tools(p)] == [], "Core Tools would ship these"
    assert [p for p in shipped if core_tools(p)] == [], "Core Tools would leave these out"
    ignored = gitignore_ignored(funcignore, left_out + shipped, tmp_path / "package")
    assert sorted(set(left_out) - ignored) == [], "azd would ship these"
    assert sorted(set(shipped) & ignored) == [], "azd would leave these out"
    docker = docker_ignores((ROOT / ".dockerignore").read_text())
    assert [p for p in left_out if not docker(p)] == [], "docker build would copy these"
    assert [p for p in shipped if docker(p)] == [], "docker build would leave these out"


def test_the_local_settings_example_has_what_func_start_needs() -> None:
    """`cp local.settings.json.example local.settings.json; func start` against Azurite: the
    worker runtime, the host's storage, every %SETTING% the bindings in function_app.py name,
    and the connection of the queue trigger registered for the example's transport. No
    AzureWebJobsFeatureFlags=EnableWorkerIndexing: worker indexing is the default since host
    4.28 (azure-functions-host #9574), and Core Tools dropped the flag (#3798)."""
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    values = example["Values"]
    assert example["IsEncrypted"] is False
    assert "AzureWebJobsFeatureFlags" not in values
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    bindings = (ROOT / "function_app.py").read_text()
    for name in re.findall(r"%(\w+)%", bindings):
        assert values.get(name), f"function_app.py binds %{name}%, which the example leaves unset"
    settings = Settings.from_env(values)
    assert settings.queue_transport == "storage", "the example runs on Azurite alone"
    assert settings.connection(STORAGE_CONNECTION).string == "UseDevelopmentStorage=true"


def test_the_docs_do_not_promise_queue_scaling_on_a_dedicated_plan() -> None:
    """The template deploys an Elastic Premium plan, which scales on the queue; a Dedicated
    (App Service) plan scales only manually or by autoscale rules ("Azure Functions hosting
    options"), so no sentence may put Dedicated plans and queue scaling together."""
    assert re.search(r"^\s+name: 'EP[123]'|tier: 'ElasticPremium'",
                     (INFRA / "modules" / "plan.bicep").read_text(), re.MULTILINE)
    for path in (ROOT / "README.md", INFRA / "README.md"):
        text = re.sub(r"\s+", " ", path.read_text())
        for sentence in re.split(r"(?<=\.)\s", text):
            if re.search(r"\bdedicated\b", sentence, re.IGNORECASE) and re.search(
                    r"scal\w* (out )?(with|on) (the )?queue", sentence):
                assert re.search(r"\b(not|no)\b", sentence), f"{path.name}: {sentence}"


def test_the_two_lanes_section_names_what_the_app_does() -> None:
    """infra/README's "Two lanes, and how they scale" states the scaling target of the
    interactive lane from host.json's maxMessageBatchSize and names each lane's function,
    queue and setting: they must be the ones the code and host.json have."""
    readme = (INFRA / "README.md").read_text()
    section = re.search(r"^## Two lanes, and how they scale$(.*?)^## ", readme, re.MULTILINE | re.DOTALL)
    assert section, "infra/README has no section \"Two lanes, and how they scale\""
    text = section.group(1)
    batch = host_json()["extensions"]["serviceBus"]["maxMessageBatchSize"]
    assert f"interactive queue ÷ {batch}⌉" in text and f"depth ÷ {batch}" in text, batch
    functions = re.findall(r"^    def (\w+)\(", (ROOT / "function_app.py").read_text(), re.MULTILINE)
    workers = {name for name in functions if name.startswith("blast_")}
    assert workers and all(f"`{name}`" in text for name in workers), workers
    for param, setting in QUEUES.values():
        assert f"`{DEFAULTS[setting]}` (`{param}`; `{setting}`)" in text, setting
    assert f"default {DEFAULTS['BLAST_INTERACTIVE_LETTERS']}" in text


# What the operator commands (python -m blast_core dead-letters [--requeue], clean-up) do to
# the deployment under the operator's own identity, and the built-in role that allows it.
OPERATOR_ROLES = {
    # Receive and complete dead letters, send requeued batches, and Manage for the queues'
    # runtime counts, on each lane's queue: Data Owner is the one built-in Service Bus role
    # with Manage.
    ("queue", "090c5cfd-751d-490a-894a-3ce6f1109419"),  # Azure Service Bus Data Owner
    ("bulkQueue", "090c5cfd-751d-490a-894a-3ce6f1109419"),  # the same on the bulk lane's queue
    ("dataStorage", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),  # Storage Blob Data Contributor
    ("dataStorage", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),  # Storage Table Data Contributor
}
# The settings those commands need to reach the deployment (README's settings table).
OPERATOR_SETTINGS = {"BLAST_QUEUE_TRANSPORT", "BLAST_QUEUE_NAME", "BLAST_BULK_QUEUE_NAME",
                     f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace", STORAGE_CONNECTION,
                     f"{STORAGE_CONNECTION}__blobServiceUri", f"{STORAGE_CONNECTION}__tableServiceUri",
                     "BLAST_RESULTS_CONTAINER", "BLAST_JOBS_TABLE", "BLAST_RETENTION_DAYS"}


def test_an_operator_can_be_given_the_roles_of_the_operator_commands() -> None:
    """The namespace has local authentication off and the data account is reached with
    identities: the operator's own identity needs roles, granted only when
    operatorPrincipalId is given, with its principal type, on the narrowest scopes."""
    main_path = INFRA / "main.bicep"
    params = bicep_params(main_path)
    assert params["operatorPrincipalId"][0] == "''"
    assert params["operatorPrincipalType"][0] == "'User'"
    module = re.search(r"^module operatorRoles '(modules/\w+\.bicep)' = "
                       r"if \(!empty\(operatorPrincipalId\)\) \{$", main_path.read_text(), re.MULTILINE)
    assert module, "main.bicep: no operator roles module deployed only with operatorPrincipalId"
    passed = bicep_module_params(main_path, "operatorRoles")
    assert passed["principalId"] == "operatorPrincipalId"
    assert passed["principalType"] == "operatorPrincipalType"
    for param, _ in QUEUES.values():
        assert passed[param] == f"serviceBus.outputs.{param}", param
    text = (INFRA / module.group(1)).read_text()
    for body in re.findall(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@[\d-]+' = \{\n(.*?)^\}$",
                           text, re.MULTILINE | re.DOTALL):
        assert re.search(r"^    principalType: principalType$", body, re.MULTILINE), body
    granted = role_assignments(text)
    assert {(scope, role) for scope, role, _ in granted} == OPERATOR_ROLES
    assert not any(condition for _, _, condition in granted), "an operator role is conditional"
    existing = bicep_resources(text, "Microsoft.ServiceBus/namespaces/queues")
    for resource, (param, _) in QUEUES.items():
        assert existing.get(resource, ("", ""))[1] == f"  parent: namespace\n  name: {param}\n", \
            f"the Service Bus role is not scoped to the queue {param}"


def test_the_deployment_outputs_the_settings_of_the_operator_commands() -> None:
    """infra/README has operators export the deployment's BLAST_* outputs as they are: each is
    a setting the code reads, with the value the app gets."""
    text = (INFRA / "main.bicep").read_text()
    outputs = dict(re.findall(r"^output (BLAST_\w+) string = (.+)$", text, re.MULTILINE))
    assert set(outputs) == OPERATOR_SETTINGS
    for name in outputs:
        connection, _, prop = name.partition("__")
        assert name in DEFAULTS or prop in CONNECTION_PROPERTIES.get(connection, ()), name
    app = bicep_module_params(INFRA / "main.bicep", "functionApp")
    assert bicep_string(outputs["BLAST_QUEUE_TRANSPORT"]) == bicep_string(
        app_settings()["BLAST_QUEUE_TRANSPORT"])
    for param, setting in QUEUES.values():
        assert outputs[setting] == app[param] == f"serviceBus.outputs.{param}", setting
    assert outputs[f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"] == app[
        "serviceBusFullyQualifiedNamespace"]
    # Set and empty: the commands otherwise fall back to a local Azurite connection string.
    assert outputs[STORAGE_CONNECTION] == "''"
    assert outputs[f"{STORAGE_CONNECTION}__blobServiceUri"] == app["dataBlobEndpoint"]
    assert outputs[f"{STORAGE_CONNECTION}__tableServiceUri"] == app["dataTableEndpoint"]
    assert outputs["BLAST_RESULTS_CONTAINER"] == app["resultsContainerName"]
    assert outputs["BLAST_JOBS_TABLE"] == app["jobsTableName"]
    assert outputs["BLAST_RETENTION_DAYS"] == f"string({app['retentionDays']})"
    readme = (INFRA / "README.md").read_text()
    for name in OPERATOR_SETTINGS:
        assert name in readme, f"infra/README does not name {name}"
