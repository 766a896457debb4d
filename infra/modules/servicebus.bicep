// The Service Bus namespace and the two job queues, one per lane: the interactive lane's
// (BLAST_QUEUE_NAME) and the bulk lane's (BLAST_BULK_QUEUE_NAME), alike in every property.
// Clients authenticate with Microsoft Entra identities only: local (SAS key) authentication
// is off.

@description('Namespace name (6-50 letters, digits and hyphens).')
param name string
param location string
param tags object = {}

@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Name of the interactive lane\'s job queue (the app setting BLAST_QUEUE_NAME).')
param queueName string = 'blast-jobs'

@description('Name of the bulk lane\'s job queue (the app setting BLAST_BULK_QUEUE_NAME); must differ from queueName.')
param bulkQueueName string = 'blast-jobs-bulk'

@description('Deliveries before a message is dead-lettered; the app setting BLAST_MAX_DELIVERIES must be equal.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 5

@description('ISO 8601 time a job may wait in the queue before it expires to the dead-letter queue.')
param messageTimeToLive string = 'P1D'

@description('ISO 8601 window in which a second message with the same MessageId (the job id) is dropped.')
param duplicateDetectionWindow string = 'PT1H'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: sku == 'Premium' ? 1 : null
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// The properties of both queues: the two lanes differ only in which jobs they carry.
var queueProperties = {
  // Five minutes is the longest lock the service allows; the Functions host renews it
  // up to host.json's maxAutoLockRenewalDuration while BLAST runs.
  lockDuration: 'PT5M'
  maxDeliveryCount: maxDeliveryCount
  deadLetteringOnMessageExpiration: true
  defaultMessageTimeToLive: messageTimeToLive
  // Can only be set when the queue is created.
  requiresDuplicateDetection: true
  duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
  requiresSession: false
  enablePartitioning: false
  maxSizeInMegabytes: 1024
}

// The interactive lane: jobs of at most BLAST_INTERACTIVE_LETTERS query letters, taken in
// batches by the function blast_worker.
resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: queueProperties
}

// The bulk lane: bigger jobs, one message at a time, by the function blast_bulk_worker.
resource bulkQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: bulkQueueName
  properties: queueProperties
}

output name string = namespace.name
output id string = namespace.id
output queueName string = queue.name
output bulkQueueName string = bulkQueue.name
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (other suffixes in other clouds).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
