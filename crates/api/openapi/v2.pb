
2.0

Kubernetesv1.32.0B˚9ﬂ
*/api/v1/namespaces/{namespace}/pods/{name}∞B≠*patchPod2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jE
x-kubernetes-group-version-kind" group: ""
kind: Pod
version: v1
Ï
1/api/v1/namespaces/{namespace}/pods/{name}/status∂B≥*patchPodStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jE
x-kubernetes-group-version-kind" group: ""
kind: Pod
version: v1
⁄
/api/v1/namespaces/{name}ºBπ*patchNamespace2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Namespace
version: v1
Á
 /api/v1/namespaces/{name}/status¬Bø*patchNamespaceStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Namespace
version: v1
À
/api/v1/nodes/{name}≤BØ*	patchNode2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jF
x-kubernetes-group-version-kind#!group: ""
kind: Node
version: v1
ÿ
/api/v1/nodes/{name}/status∏Bµ*patchNodeStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jF
x-kubernetes-group-version-kind#!group: ""
kind: Node
version: v1
Â
,/api/v1/namespaces/{namespace}/events/{name}¥B±*
patchEvent2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jG
x-kubernetes-group-version-kind$"group: ""
kind: Event
version: v1
Î
./api/v1/namespaces/{namespace}/services/{name}∏Bµ*patchService2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jI
x-kubernetes-group-version-kind&$group: ""
kind: Service
version: v1
¯
5/api/v1/namespaces/{namespace}/services/{name}/statusæBª*patchServiceStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jI
x-kubernetes-group-version-kind&$group: ""
kind: Service
version: v1

//api/v1/namespaces/{namespace}/endpoints/{name}ºBπ*patchEndpoints2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Endpoints
version: v1
Ò
0/api/v1/namespaces/{namespace}/configmaps/{name}ºBπ*patchConfigMap2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: ConfigMap
version: v1
Ë
-/api/v1/namespaces/{namespace}/secrets/{name}∂B≥*patchSecret2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jH
x-kubernetes-group-version-kind%#group: ""
kind: Secret
version: v1
Ä
5/api/v1/namespaces/{namespace}/serviceaccounts/{name}∆B√*patchServiceAccount2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jP
x-kubernetes-group-version-kind-+group: ""
kind: ServiceAccount
version: v1
ç
A/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}«Bƒ*
patchLease2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jZ
x-kubernetes-group-version-kind75group: "coordination.k8s.io"
kind: Lease
version: v1
Å
;/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}¡Bæ*
patchEvent2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string†B&
$" query"fieldManager2string†B)
'%#query"fieldValidation2string†B
query"force2string†j
x-kubernetes-actionpatch
jT
x-kubernetes-group-version-kind1/group: "events.k8s.io"
kind: Event
version: v1
