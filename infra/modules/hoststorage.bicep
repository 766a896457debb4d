// Runtime storage of the Functions host (AzureWebJobsStorage: keys, leases, timers) and
// the content share that an Elastic Premium app keeps its deployed code on. Kept apart
// from the data account so that the host's Blob Data Owner role reaches no results.

@description('Storage account name (3-24 lowercase letters and digits).')
param name string
param location string
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:No virtual network in this template: the Elastic Premium app reaches storage over its public endpoint (TLS 1.2, no anonymous access).
  //checkov:skip=CKV_AZURE_59:No virtual network in this template: the Elastic Premium app reaches storage over its public endpoint (TLS 1.2, no anonymous access).
  //checkov:skip=CKV_AZURE_206:Host runtime state (leases, keys, deployed package) is rebuilt by the host and by a redeployment.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // The host itself connects with its managed identity (AzureWebJobsStorage__accountName),
    // but the Elastic Premium content share (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING)
    // accepts only a connection string with the account key.
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output name string = account.name
output id string = account.id
