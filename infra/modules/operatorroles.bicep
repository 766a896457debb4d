// Role assignments of an operator's own identity (a person, a group or a service principal),
// for the commands that reach the deployment directly rather than through the HTTP API:
// `python -m blast_core dead-letters [--requeue]` and `clean-up` (infra/README.md, "Operator
// commands"). The namespace has local authentication off and the data account is reached
// with identities, so without these the commands are refused.

@description('Object (principal) id of the operator.')
param principalId string

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

param dataStorageName string
param serviceBusName string

@description('Queue of the interactive lane (BLAST_QUEUE_NAME).')
param queueName string

@description('Queue of the bulk lane (BLAST_BULK_QUEUE_NAME).')
param bulkQueueName string

var roleIds = {
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: queueName
}

resource bulkQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: bulkQueueName
}

// Each queue and its dead-letter sub-queue: receive and complete dead letters (Listen), send
// the requeued batches back to their lane's queue (Send), and read the queue's runtime counts
// through the management API (Manage). Data Owner is the only built-in Service Bus role with
// Manage, and it holds Send and Listen as well, so it is the one assignment per queue, on the
// two queues alone rather than the namespace.
resource queueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, roleIds.serviceBusDataOwner)
  scope: queue
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataOwner)
  }
}

resource bulkQueueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(bulkQueue.id, principalId, roleIds.serviceBusDataOwner)
  scope: bulkQueue
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataOwner)
  }
}

// clean-up deletes expired jobs' blobs (and creates the container if it is missing).
resource resultsBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, principalId, roleIds.storageBlobDataContributor)
  scope: dataStorage
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
  }
}

// dead-letters reads the job records, --requeue resets them, clean-up deletes them.
resource jobsTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, principalId, roleIds.storageTableDataContributor)
  scope: dataStorage
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
  }
}
