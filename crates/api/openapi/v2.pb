
2.0

Kubernetesv1.32.0BÇ‘ß
*/api/v1/namespaces/{namespace}/pods/{name}°B­*patchPod2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jE
x-kubernetes-group-version-kind" group: ""
kind: Pod
version: v1
ì
1/api/v1/namespaces/{namespace}/pods/{name}/status¶B³*patchPodStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jE
x-kubernetes-group-version-kind" group: ""
kind: Pod
version: v1
Ú
/api/v1/namespaces/{name}¼B¹*patchNamespace2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Namespace
version: v1
ç
 /api/v1/namespaces/{name}/statusÂB¿*patchNamespaceStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Namespace
version: v1
Ë
/api/v1/nodes/{name}²B¯*	patchNode2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jF
x-kubernetes-group-version-kind#!group: ""
kind: Node
version: v1
Ø
/api/v1/nodes/{name}/status¸Bµ*patchNodeStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jF
x-kubernetes-group-version-kind#!group: ""
kind: Node
version: v1
å
,/api/v1/namespaces/{namespace}/events/{name}´B±*
patchEvent2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jG
x-kubernetes-group-version-kind$"group: ""
kind: Event
version: v1
ë
./api/v1/namespaces/{namespace}/services/{name}¸Bµ*patchService2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jI
x-kubernetes-group-version-kind&$group: ""
kind: Service
version: v1
ø
5/api/v1/namespaces/{namespace}/services/{name}/status¾B»*patchServiceStatus2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jI
x-kubernetes-group-version-kind&$group: ""
kind: Service
version: v1
ð
//api/v1/namespaces/{namespace}/endpoints/{name}¼B¹*patchEndpoints2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: Endpoints
version: v1
ñ
0/api/v1/namespaces/{namespace}/configmaps/{name}¼B¹*patchConfigMap2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jK
x-kubernetes-group-version-kind(&group: ""
kind: ConfigMap
version: v1
è
-/api/v1/namespaces/{namespace}/secrets/{name}¶B³*patchSecret2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jH
x-kubernetes-group-version-kind%#group: ""
kind: Secret
version: v1
€
5/api/v1/namespaces/{namespace}/serviceaccounts/{name}ÆBÃ*patchServiceAccount2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jP
x-kubernetes-group-version-kind-+group: ""
kind: ServiceAccount
version: v1
•
</api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}ÔBÑ*patchPersistentVolumeClaim2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jW
x-kubernetes-group-version-kind42group: ""
kind: PersistentVolumeClaim
version: v1
ï
 /api/v1/persistentvolumes/{name}ÊBÇ*patchPersistentVolume2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jR
x-kubernetes-group-version-kind/-group: ""
kind: PersistentVolume
version: v1
•
</api/v1/namespaces/{namespace}/replicationcontrollers/{name}ÔBÑ*patchReplicationController2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jW
x-kubernetes-group-version-kind42group: ""
kind: ReplicationController
version: v1
û
6/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}ÀB½*patchDaemonSet2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jO
x-kubernetes-group-version-kind,*group: "apps"
kind: DaemonSet
version: v1
þ
7/apis/apps/v1/namespaces/{namespace}/deployments/{name}ÂB¿*patchDeployment2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jP
x-kubernetes-group-version-kind-+group: "apps"
kind: Deployment
version: v1
þ
7/apis/apps/v1/namespaces/{namespace}/replicasets/{name}ÂB¿*patchReplicaSet2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jP
x-kubernetes-group-version-kind-+group: "apps"
kind: ReplicaSet
version: v1

8/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}ÄBÁ*patchStatefulSet2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jQ
x-kubernetes-group-version-kind.,group: "apps"
kind: StatefulSet
version: v1
÷
5/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}½Bº*patchCronJob2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jN
x-kubernetes-group-version-kind+)group: "batch"
kind: CronJob
version: v1
ë
1/apis/batch/v1/namespaces/{namespace}/jobs/{name}µB²*patchJob2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jJ
x-kubernetes-group-version-kind'%group: "batch"
kind: Job
version: v1
Ÿ
F/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}ÔBÑ*patchEndpointSlice2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
j_
x-kubernetes-group-version-kind<:group: "discovery.k8s.io"
kind: EndpointSlice
version: v1

B/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}ÉBÆ*patchIngress2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jZ
x-kubernetes-group-version-kind75group: "networking.k8s.io"
kind: Ingress
version: v1

A/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}ÇBÄ*
patchLease2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jZ
x-kubernetes-group-version-kind75group: "coordination.k8s.io"
kind: Lease
version: v1

;/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}ÁB¾*
patchEvent2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jT
x-kubernetes-group-version-kind1/group: "events.k8s.io"
kind: Event
version: v1
©
=/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}çBä*patchClusterRoleBinding2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jm
x-kubernetes-group-version-kindJHgroup: "rbac.authorization.k8s.io"
kind: ClusterRoleBinding
version: v1
”
6/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}ÙBÖ*patchClusterRole2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jf
x-kubernetes-group-version-kindCAgroup: "rbac.authorization.k8s.io"
kind: ClusterRole
version: v1
«
M/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}ÙBÖ*patchRoleBinding2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jf
x-kubernetes-group-version-kindCAgroup: "rbac.authorization.k8s.io"
kind: RoleBinding
version: v1
–
F/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}ËBÈ*	patchRole2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
j_
x-kubernetes-group-version-kind<:group: "rbac.authorization.k8s.io"
kind: Role
version: v1
È
U/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews/{name}îBë*patchLocalSubjectAccessReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jn
x-kubernetes-group-version-kindKIgroup: "authorization.k8s.io"
kind: LocalSubjectAccessReview
version: v1
®
=/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/{name}ìBé*patchSelfSubjectAccessReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jm
x-kubernetes-group-version-kindJHgroup: "authorization.k8s.io"
kind: SelfSubjectAccessReview
version: v1
«
</apis/authorization.k8s.io/v1/selfsubjectrulesreviews/{name}êBç*patchSelfSubjectRulesReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jl
x-kubernetes-group-version-kindIGgroup: "authorization.k8s.io"
kind: SelfSubjectRulesReview
version: v1
¢
9/apis/authorization.k8s.io/v1/subjectaccessreviews/{name}äBá*patchSubjectAccessReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
ji
x-kubernetes-group-version-kindFDgroup: "authorization.k8s.io"
kind: SubjectAccessReview
version: v1
ž
8/apis/authentication.k8s.io/v1/selfsubjectreviews/{name}áBÞ*patchSelfSubjectReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jh
x-kubernetes-group-version-kindECgroup: "authentication.k8s.io"
kind: SelfSubjectReview
version: v1
Œ
2/apis/authentication.k8s.io/v1/tokenreviews/{name}ÕBÒ*patchTokenReview2application/json2application/yaml:application/apply-patch+yaml:application/json-patch+json:application/merge-patch+json:&application/strategic-merge-patch+jsonB 
query"dryRun2string B&
$" query"fieldManager2string B)
'%#query"fieldValidation2string B
query"force2string j
x-kubernetes-actionpatch
jb
x-kubernetes-group-version-kind?=group: "authentication.k8s.io"
kind: TokenReview
version: v1
