{{/*
The rules come from the code (service/check.py PERMISSIONS and the API calls in monitors/, tools/cluster.py,
tools/write.py, orchestrator/, notifications/outbox_records.py, service/leader.py). Nothing here deletes a
workload, a pod (pods go through the Eviction API, so PodDisruptionBudgets hold), a namespace or a user's
ConfigMap or Secret.
*/}}

{{/* Where AMOS acts: watch and diagnose every workload kind, fix the revisioned ones and Jobs. */}}
{{- define "amos.workloadRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]            # detect faults (monitors/watch.py)
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]                         # logs of failing containers (tools/cluster.py pod_log)
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]                      # replace a stuck pod; PodDisruptionBudgets hold (tools/cluster.py evict)
- apiGroups: [""]
  resources: [events]
  verbs: [get, list, watch, create]    # FailedCreate/Unhealthy evidence; AMOS's own Events (orchestrator/events.py)
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]                   # ConfigMaps a workload references, snapshotted before a fix
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, watch, patch, update]   # fix (patch), roll back and restore (update)
- apiGroups: [apps]
  resources: [replicasets, controllerrevisions]
  verbs: [get, list, watch]            # owners and rollout history (known-good revisions)
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list, watch, patch, update]
{{- end -}}

{{/* Secrets where AMOS acts: read only (which keys exist; values only teach the redactor). */}}
{{- define "amos.secretReadRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end -}}

{{/* AMOS's own namespace: its state (journal, attempt ledger, outbox, breaker in ConfigMaps; snapshots,
known-good history and the signing key in Secrets it creates), the leader Lease, its Events. */}}
{{- define "amos.stateRules" -}}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, update, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
