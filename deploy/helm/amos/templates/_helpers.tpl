{{/* Names, labels and the lists the templates share. */}}

{{- define "amos.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "amos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "amos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amos
{{- end -}}

{{- define "amos.serviceAccountName" -}}
{{- default (include "amos.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "amos.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces that get a per-namespace Role: the ones AMOS acts in, minus the excluded ones. */}}
{{- define "amos.actingNamespaces" -}}
{{- $acting := list -}}
{{- range .Values.namespaces -}}
{{- if not (has . $.Values.excludedNamespaces) -}}
{{- $acting = append $acting . -}}
{{- end -}}
{{- end -}}
{{- $acting | uniq | toJson -}}
{{- end -}}

{{/* Where Secrets may be read: rbac.secrets.namespaces, else where AMOS acts; "[]" with namespaces empty means everywhere. */}}
{{- define "amos.secretNamespaces" -}}
{{- if .Values.rbac.secrets.namespaces -}}
{{- .Values.rbac.secrets.namespaces | uniq | toJson -}}
{{- else -}}
{{- include "amos.actingNamespaces" . -}}
{{- end -}}
{{- end -}}

{{- define "amos.subject" -}}
- kind: ServiceAccount
  name: {{ include "amos.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
