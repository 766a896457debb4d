// Data storage: the results container, the job table and the Azure Files share that
// holds the BLAST databases (mounted into the function app).

@description('Storage account name (3-24 lowercase letters and digits).')
param name string
param location string
param tags object = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param sku string = 'Standard_LRS'

@description('Blob container for queries and results (the app setting BLAST_RESULTS_CONTAINER).')
param resultsContainerName string = 'blast-results'

@description('Table holding the job records (the app setting BLAST_JOBS_TABLE).')
param jobsTableName string = 'blastjobs'

@description('Azure Files share holding the BLAST databases.')
param dbShareName string = 'blastdb'

@description('Size limit of the database share in GiB.')
@minValue(1)
@maxValue(102400)
param dbShareQuotaGiB int = 100

@description('Days after submission that a job record, its query and its results are kept (BLAST_RETENTION_DAYS); 0 keeps them forever and deploys no lifecycle rule.')
@minValue(0)
param retentionDays int = 60

@description('Origins whose pages may PUT an upload (a write-only SAS for one blob) straight to the results container: the function app\'s own web page.')
param uploadOrigins array

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:No virtual network in this template: the Elastic Premium app reaches storage over its public endpoint (TLS 1.2, no anonymous access).
  //checkov:skip=CKV_AZURE_59:No virtual network in this template: the Elastic Premium app reaches storage over its public endpoint (TLS 1.2, no anonymous access).
  //checkov:skip=CKV_AZURE_206:Replication is the storageSku parameter; LRS by default because results expire and databases can be uploaded again.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: sku
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Shared keys stay enabled only because the Azure Files mount of the database share
    // authenticates with the account key (App Service mounts support no identity).
    // Blobs and tables are reached with the function app's managed identity.
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    // The web page uploads a large query with PUTs from the app's origin (Put Block, Put Block
    // List); the SAS in each URL is what authorises it.
    cors: {
      corsRules: [
        {
          allowedOrigins: uploadOrigins
          allowedMethods: [
            'PUT'
          ]
          allowedHeaders: [
            '*'
          ]
          exposedHeaders: [
            'x-ms-request-id'
            'x-ms-error-code'
          ]
          maxAgeInSeconds: 3600
        }
      ]
    }
  }
}

resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: resultsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource jobsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: jobsTableName
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource dbShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: dbShareName
  properties: {
    shareQuota: dbShareQuotaGiB
    enabledProtocols: 'SMB'
    accessTier: 'TransactionOptimized'
  }
}

// A backstop, not the clean-up itself: the app's hourly timer function cleanup_expired_jobs
// deletes each expired job's record and its blobs (<job id>/... in the results container) on
// time. This rule deletes whatever it leaves behind, such as blobs a worker wrote after the
// record was deleted. It counts from each blob's creation, which is never before the job's
// submission, so it never deletes a blob of a job that has not expired; lifecycle policies
// run about once a day.
resource resultLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (retentionDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-job-blobs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${resultsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
output resultsContainerName string = resultsContainer.name
output jobsTableName string = jobsTable.name
output dbShareName string = dbShare.name
