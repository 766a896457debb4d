// Container registry for the BLAST+ image (only deployed when blastSource is 'container').
// The function app pulls with its managed identity (AcrPull); the admin user stays off.

@description('Registry name (5-50 letters and digits).')
param name string
param location string
param tags object = {}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  //checkov:skip=CKV_AZURE_139:No virtual network in this template: App Service pulls the image over the public endpoint with its managed identity.
  //checkov:skip=CKV_AZURE_163:Image scanning is Microsoft Defender for Containers, a subscription-level choice outside this template.
  //checkov:skip=CKV_AZURE_166:Quarantine needs the Premium registry tier; the one image is built from this repository's Dockerfile.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
