// The Linux Elastic Premium plan. Cores per instance: EP1 1, EP2 2, EP3 4 (see the
// maxConcurrentCalls override in functionapp.bicep).

param name string
param location string
param tags object = {}

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param sku string = 'EP1'

@description('Most instances the plan may burst to (maximumElasticWorkerCount).')
@minValue(1)
@maxValue(100)
param maximumBurst int = 10

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  //checkov:skip=CKV_AZURE_225:Zone redundancy needs at least three always-ready instances; jobs are retried from the queue if an instance is lost.
  name: name
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: sku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumBurst
  }
}

output id string = plan.id
output name string = plan.name
