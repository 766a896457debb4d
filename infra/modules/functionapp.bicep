// The Linux function app: Python 3.12 code or the BLAST+ container image, a system-assigned
// identity for every connection that accepts one, and the database share mounted at
// BLAST_DB_DIR. The names written here are checked against blast_core/settings.py by
// tests/test_infra.py.

param name string
param location string
param tags object = {}
param planId string

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string

@description('container: run the image built from the Dockerfile (BLAST+ on PATH); share: run Python 3.12 code (the Python of the Dockerfile\'s base image) and take BLAST+ from the database share.')
@allowed([
  'container'
  'share'
])
param blastSource string

@description('Image reference for blastSource container, e.g. myregistry.azurecr.io/blast-functions:1.')
param containerImage string = ''

param hostStorageName string
param dataStorageName string
param dataBlobEndpoint string
param dataTableEndpoint string
param resultsContainerName string
param jobsTableName string
param dbShareName string

@description('Where the database share is mounted; also BLAST_DB_DIR. Must not start with /home.')
param dbMountPath string

@description('Directory under the database share holding blastn and friends (blastSource share).')
param blastBinSubdirectory string

@description('Instance-local directory for staged database copies (BLAST_DB_CACHE_DIR); empty: search the share.')
param dbCacheDir string

param serviceBusFullyQualifiedNamespace string

@description('Queue of the interactive lane (BLAST_QUEUE_NAME), the function blast_worker.')
param queueName string

@description('Queue of the bulk lane (BLAST_BULK_QUEUE_NAME), the function blast_bulk_worker. Its trigger binds %BLAST_BULK_QUEUE_NAME%: without the setting the host cannot index the function.')
param bulkQueueName string

param maxDeliveryCount int
param appInsightsConnectionString string

@minValue(1)
@maxValue(4)
param blastThreads int

@description('Seconds one BLAST run may take; at most host.json functionTimeout (01:00:00) less 5 minutes to store results (blast_core/domain/limits.py).')
@minValue(60)
@maxValue(3300)
param blastTimeLimitSeconds int

@description('Days after submission that a job record, its query and its results are kept (BLAST_RETENTION_DAYS); 0 keeps them forever.')
@minValue(0)
param retentionDays int

@description('More app settings, name to value (strings), merged into the ones this module writes; a name it writes itself keeps its value here.')
param extraAppSettings object = {}

var useContainer = blastSource == 'container'

var coresPerInstance = {
  EP1: 1
  EP2: 2
  EP3: 4
}

// BLAST is CPU-bound: messages handled at once on an instance times threads per BLAST run
// should equal the instance's cores. maxConcurrentCalls governs the single-dispatch bulk
// trigger only, and target-based scaling asks for an instance per maxConcurrentCalls
// messages waiting in the bulk queue; the interactive trigger takes batches (host.json
// maxMessageBatchSize), one at a time per instance, and asks for an instance per
// maxMessageBatchSize waiting messages (infra/README.md, "Two lanes, and how they scale").
var maxConcurrentCalls = max(1, coresPerInstance[planSku] / blastThreads)

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

// App settings, as maps that tests/test_infra.py reads. Values must be known when the
// deployment starts (they feed a for-expression): the key-bearing setting is separate.
var commonSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  AzureWebJobsStorage__accountName: hostStorage.name
  WEBSITE_CONTENTSHARE: take(toLower(name), 63)
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls: string(maxConcurrentCalls)
  BLAST_DB_DIR: dbMountPath
  BLAST_BIN_DIR: useContainer ? '' : '${dbMountPath}/${blastBinSubdirectory}'
  BLAST_DB_CACHE_DIR: dbCacheDir
  BLAST_THREADS: string(blastThreads)
  BLAST_TIME_LIMIT: string(blastTimeLimitSeconds)
  BLAST_RETENTION_DAYS: string(retentionDays)
  BLAST_QUEUE_TRANSPORT: 'servicebus'
  BLAST_QUEUE_NAME: queueName
  BLAST_BULK_QUEUE_NAME: bulkQueueName
  BLAST_MAX_DELIVERIES: string(maxDeliveryCount)
  BLAST_RESULTS_CONTAINER: resultsContainerName
  BLAST_JOBS_TABLE: jobsTableName
  BLAST_SERVICEBUS__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  BLAST_STORAGE__blobServiceUri: dataBlobEndpoint
  BLAST_STORAGE__tableServiceUri: dataTableEndpoint
}

// blastSource container: the image carries the app; /home is not the content of a code
// deployment.
var containerSettings = {
  WEBSITES_ENABLE_APP_SERVICE_STORAGE: 'false'
}

// blastSource share: zip deployments (azd deploy, func azure functionapp publish) are built on
// the server, which installs requirements.txt. A remote build on Linux needs both settings
// ("App settings reference for Azure Functions", ENABLE_ORYX_BUILD); without the second the
// code can be deployed without its packages. azd's own Bicep modules set both.
var codeDeploymentSettings = {
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
}

// siteConfig.appSettings replaces the app's whole set on every deployment, so a setting added
// by hand would be lost on the next one: extraAppSettings carries them. It comes first, so the
// settings written here, which the rest of the deployment depends on, keep their values.
var appSettings = union(extraAppSettings, commonSettings, useContainer ? containerSettings : codeDeploymentSettings)

var appSettingsList = [for setting in items(appSettings): {
  name: setting.key
  value: string(setting.value)
}]

// Unavoidable key: the Elastic Premium content share (WEBSITE_CONTENTSHARE) accepts only a
// connection string with the host storage account's key.
var contentShareConnection = {
  name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
  value: 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};AccountKey=${hostStorage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  //checkov:skip=CKV_AZURE_222:The HTTP API is public by design; every route but /api/health needs a function key.
  //checkov:skip=CKV_AZURE_17:Clients authenticate with function keys, not client certificates.
  //checkov:skip=CKV_AZURE_212:numberOfWorkers applies to Dedicated plans; Elastic Premium keeps an always-ready instance and scales out on queue length.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: useContainer ? 'functionapp,linux,container' : 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: planId
    reserved: true
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: {
      // The code deployment runs the Python of the container's base image (Dockerfile), so
      // both blastSource choices run the same Python; tests/test_infra.py checks they agree.
      linuxFxVersion: useContainer ? 'DOCKER|${containerImage}' : 'Python|3.12'
      acrUseManagedIdentityCreds: useContainer
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      // Instances whose health route stops answering are replaced.
      healthCheckPath: '/api/health'
      appSettings: concat(appSettingsList, [
        contentShareConnection
      ])
    }
  }
}

resource dbMount 'Microsoft.Web/sites/config@2023-12-01' = {
  // checkov reads every sites/config resource as web settings; this one only mounts a share.
  //checkov:skip=CKV_AZURE_13:Not web settings (azurestorageaccounts); routes are guarded by function keys.
  //checkov:skip=CKV_AZURE_63:Not web settings (azurestorageaccounts); logs go to Application Insights.
  //checkov:skip=CKV_AZURE_65:Not web settings (azurestorageaccounts); logs go to Application Insights.
  //checkov:skip=CKV_AZURE_66:Not web settings (azurestorageaccounts); logs go to Application Insights.
  //checkov:skip=CKV_AZURE_80:Not web settings (azurestorageaccounts); the app is Python, not .NET.
  //checkov:skip=CKV_AZURE_88:This resource is the Azure Files mount the check asks for.
  //checkov:skip=CKV_AZURE_222:Not web settings (azurestorageaccounts); public access is decided on the site.
  parent: site
  name: 'azurestorageaccounts'
  properties: {
    blastdb: {
      type: 'AzureFiles'
      accountName: dataStorage.name
      shareName: dbShareName
      mountPath: dbMountPath
      // Unavoidable key: App Service mounts Azure Files with the account key only.
      accessKey: dataStorage.listKeys().keys[0].value
    }
  }
}

resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
