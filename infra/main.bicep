// BLAST search service: a Python Azure Functions app on a Linux Elastic Premium plan that
// takes jobs from two Service Bus queues (an interactive lane and a bulk lane), runs BLAST+
// against databases on an Azure Files share and keeps results in blob storage. Deployed
// into an existing resource group:
//   az deployment group create -g <group> -f infra/main.bicep -p infra/main.parameters.json
// See infra/README.md.

@description('Short prefix of every resource name: 3-10 lowercase letters and digits.')
@minLength(3)
@maxLength(10)
param namePrefix string = 'blast'

param location string = resourceGroup().location
param tags object = {}

@description('Elastic Premium plan size: EP1 1 core and 3.5 GB, EP2 2 cores and 7 GB, EP3 4 cores and 14 GB per instance.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Most instances the plan may burst to.')
@minValue(1)
@maxValue(100)
param maximumBurst int = 10

@description('-num_threads of each BLAST run (BLAST_THREADS); an instance runs cores / threads jobs at once.')
@minValue(1)
@maxValue(4)
param blastThreads int = 1

@description('Seconds one BLAST run may take (BLAST_TIME_LIMIT); at most 55 minutes: host.json functionTimeout (01:00:00, the 60 minutes a Premium instance gives a running function on scale-in) less 5 minutes to store results (blast_core/domain/limits.py).')
@minValue(60)
@maxValue(3300)
param blastTimeLimitSeconds int = 2700

@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Queue of the interactive lane, jobs of at most BLAST_INTERACTIVE_LETTERS query letters (BLAST_QUEUE_NAME).')
param queueName string = 'blast-jobs'

@description('Queue of the bulk lane, the bigger jobs (BLAST_BULK_QUEUE_NAME); must differ from queueName. Same properties as the interactive queue.')
param bulkQueueName string = 'blast-jobs-bulk'

@description('Deliveries of a job message before it is dead-lettered and the job marked failed, on both queues (also BLAST_MAX_DELIVERIES).')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 5

@description('ISO 8601 time a job may wait in the queue before it expires to the dead-letter queue.')
param messageTimeToLive string = 'P1D'

@description('ISO 8601 window in which a resubmitted job (same MessageId) is dropped as a duplicate.')
param duplicateDetectionWindow string = 'PT1H'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param storageSku string = 'Standard_LRS'

@description('Size limit of the BLAST database share in GiB.')
@minValue(1)
@maxValue(102400)
param dbShareQuotaGiB int = 100

@description('Mount path of the database share in the app, and BLAST_DB_DIR. Must not start with /home.')
param dbMountPath string = '/mounts/blastdb'

@description('Directory on the local disk of each instance into which a database is copied from the share on first use and searched from then on (BLAST_DB_CACHE_DIR), e.g. /tmp/blastdb-cache (instance-local, emptied on restart; a database that does not fit is searched on the share). Empty (the default): search the share. Staging makes the first job on an instance about 1 s slower for a 111 MB database (docs/benchmarks.md) and pays off for large databases that fall out of the page cache.')
param dbCacheDir string = ''

@description('Days after submission that a job record, its query and its results are kept (BLAST_RETENTION_DAYS); 0 keeps them forever. The hourly cleanup_expired_jobs timer function deletes expired jobs; a lifecycle rule on the results container deletes any blob left behind.')
@minValue(0)
param retentionDays int = 60

@description('Where BLAST+ comes from: container (the Dockerfile image, pushed to the registry this template creates) or share (Python 3.12 code deployment; NCBI\'s BLAST+ binaries uploaded to the database share, see infra/README.md).')
@allowed([
  'container'
  'share'
])
param blastSource string = 'share'

@description('blastSource container: image to run; empty means blast-functions:latest in the created registry.')
param containerImage string = ''

@description('blastSource share: directory under the database share holding blastn, blast_formatter and blastdbcmd.')
param blastBinSubdirectory string = 'ncbi-blast/bin'

@description('Give the app Azure Service Bus Data Owner on both queues so target-based scaling sees their exact lengths.')
param accurateScaleMetrics bool = true

@description('More app settings of the function app, name to value, e.g. {"BLAST_MAX_QUERIES": "50000"}. Every deployment replaces the app\'s whole set of settings, so one set by hand is lost on the next deployment: set it here. Names this template writes keep the template\'s values; no secrets (use a Key Vault reference).')
param extraAppSettings object = {}

@description('Object (principal) id of whoever runs the operator commands against this deployment (python -m blast_core dead-letters [--requeue], clean-up; see infra/README.md): it gets Azure Service Bus Data Owner on both queues and Storage Blob and Table Data Contributor on the data account. Empty: no operator roles.')
param operatorPrincipalId string = ''

@description('What operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

var token = uniqueString(resourceGroup().id, namePrefix)
var prefix = toLower(namePrefix)
var useContainer = blastSource == 'container'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: '${prefix}-log-${token}'
    appInsightsName: '${prefix}-appi-${token}'
    location: location
    tags: tags
  }
}

module hostStorage 'modules/hoststorage.bicep' = {
  name: 'host-storage'
  params: {
    name: take('${prefix}host${token}', 24)
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'data-storage'
  params: {
    name: take('${prefix}data${token}', 24)
    location: location
    tags: tags
    sku: storageSku
    dbShareQuotaGiB: dbShareQuotaGiB
    retentionDays: retentionDays
    uploadOrigins: [
      'https://${prefix}-func-${token}.azurewebsites.net'
    ]
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'service-bus'
  params: {
    name: '${prefix}-sb-${token}'
    location: location
    tags: tags
    sku: serviceBusSku
    queueName: queueName
    bulkQueueName: bulkQueueName
    maxDeliveryCount: maxDeliveryCount
    messageTimeToLive: messageTimeToLive
    duplicateDetectionWindow: duplicateDetectionWindow
  }
}

module registry 'modules/registry.bicep' = if (useContainer) {
  name: 'registry'
  params: {
    name: take('${prefix}acr${token}', 50)
    location: location
    tags: tags
  }
}

module plan 'modules/plan.bicep' = {
  name: 'plan'
  params: {
    name: '${prefix}-plan-${token}'
    location: location
    tags: tags
    sku: planSku
    maximumBurst: maximumBurst
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    name: '${prefix}-func-${token}'
    location: location
    tags: tags
    planId: plan.outputs.id
    planSku: planSku
    blastSource: blastSource
    containerImage: useContainer && empty(containerImage) ? '${registry.outputs.loginServer}/blast-functions:latest' : containerImage
    hostStorageName: hostStorage.outputs.name
    dataStorageName: storage.outputs.name
    dataBlobEndpoint: storage.outputs.blobEndpoint
    dataTableEndpoint: storage.outputs.tableEndpoint
    resultsContainerName: storage.outputs.resultsContainerName
    jobsTableName: storage.outputs.jobsTableName
    dbShareName: storage.outputs.dbShareName
    dbMountPath: dbMountPath
    blastBinSubdirectory: blastBinSubdirectory
    dbCacheDir: dbCacheDir
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    queueName: serviceBus.outputs.queueName
    bulkQueueName: serviceBus.outputs.bulkQueueName
    maxDeliveryCount: maxDeliveryCount
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    blastThreads: blastThreads
    blastTimeLimitSeconds: blastTimeLimitSeconds
    retentionDays: retentionDays
    extraAppSettings: extraAppSettings
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    hostStorageName: hostStorage.outputs.name
    dataStorageName: storage.outputs.name
    serviceBusName: serviceBus.outputs.name
    queueName: serviceBus.outputs.queueName
    bulkQueueName: serviceBus.outputs.bulkQueueName
    appInsightsName: monitoring.outputs.appInsightsName
    registryName: useContainer ? registry.outputs.name : ''
    accurateScaleMetrics: accurateScaleMetrics
  }
}

module operatorRoles 'modules/operatorroles.bicep' = if (!empty(operatorPrincipalId)) {
  name: 'operator-roles'
  params: {
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    dataStorageName: storage.outputs.name
    serviceBusName: serviceBus.outputs.name
    queueName: serviceBus.outputs.queueName
    bulkQueueName: serviceBus.outputs.bulkQueueName
  }
}

// Names and addresses only: no key or connection string leaves the deployment.
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output DATA_STORAGE_ACCOUNT string = storage.outputs.name
output DB_SHARE_NAME string = storage.outputs.dbShareName
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output CONTAINER_REGISTRY string = useContainer ? registry.outputs.name : ''

// The settings with which the operator commands reach this deployment under the operator's
// own identity (infra/README.md, "Operator commands"), named as the code reads them, so that
// `azd env get-values` or the deployment's outputs can be exported as they are.
output BLAST_QUEUE_TRANSPORT string = 'servicebus'
output BLAST_QUEUE_NAME string = serviceBus.outputs.queueName
output BLAST_BULK_QUEUE_NAME string = serviceBus.outputs.bulkQueueName
output BLAST_SERVICEBUS__fullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
// Empty on purpose: `python -m blast_core` falls back to the local Azurite's connection string
// when BLAST_STORAGE is unset; set and empty, the identity-based BLAST_STORAGE__* below apply.
output BLAST_STORAGE string = ''
output BLAST_STORAGE__blobServiceUri string = storage.outputs.blobEndpoint
output BLAST_STORAGE__tableServiceUri string = storage.outputs.tableEndpoint
output BLAST_RESULTS_CONTAINER string = storage.outputs.resultsContainerName
output BLAST_JOBS_TABLE string = storage.outputs.jobsTableName
output BLAST_RETENTION_DAYS string = string(retentionDays)
