{{/* Chart name, at most 63 characters. */}}
{{- define "shardset-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already holds the chart name. */}}
{{- define "shardset-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shardset-operator.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{- define "shardset-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "shardset-operator.commonLabels" -}}
helm.sh/chart: {{ include "shardset-operator.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shardset
{{- end }}

{{/* Labels of the operator's objects (its Deployment, Service, RBAC, ...). */}}
{{- define "shardset-operator.labels" -}}
{{ include "shardset-operator.commonLabels" . }}
{{ include "shardset-operator.selectorLabels" . }}
{{- end }}

{{/* Labels of the in-chart Redis objects. */}}
{{- define "shardset-operator.redisLabels" -}}
{{ include "shardset-operator.commonLabels" . }}
{{ include "shardset-operator.redisSelectorLabels" . }}
{{- end }}

{{/* Labels every object of the release shares (never a selector on their own: see below). */}}
{{- define "shardset-operator.instanceLabels" -}}
app.kubernetes.io/name: {{ include "shardset-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the operator pods only: without the component, the operator's Deployment, metrics
Service, anti-affinity and NetworkPolicy would also select the in-chart Redis pod. */}}
{{- define "shardset-operator.selectorLabels" -}}
{{ include "shardset-operator.instanceLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selects the in-chart Redis pod. */}}
{{- define "shardset-operator.redisSelectorLabels" -}}
{{ include "shardset-operator.instanceLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Labels of the in-chart Redis Sentinel objects (`redis.sentinel.enabled`). */}}
{{- define "shardset-operator.redisSentinelLabels" -}}
{{ include "shardset-operator.commonLabels" . }}
{{ include "shardset-operator.redisSentinelSelectorLabels" . }}
{{- end }}

{{/* Selects the in-chart Redis Sentinel pods (the Redis nodes beside them keep `redis`). */}}
{{- define "shardset-operator.redisSentinelSelectorLabels" -}}
{{ include "shardset-operator.instanceLabels" . }}
app.kubernetes.io/component: redis-sentinel
{{- end }}

{{/* Labels of the in-chart NATS objects. */}}
{{- define "shardset-operator.natsLabels" -}}
{{ include "shardset-operator.commonLabels" . }}
{{ include "shardset-operator.natsSelectorLabels" . }}
{{- end }}

{{/* Selects the in-chart NATS pod. */}}
{{- define "shardset-operator.natsSelectorLabels" -}}
{{ include "shardset-operator.instanceLabels" . }}
app.kubernetes.io/component: nats
{{- end }}

{{- define "shardset-operator.natsName" -}}
{{- printf "%s-nats" (include "shardset-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shardset-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shardset-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shardset-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The worker image released with this chart (`--worker-image`). Missing values (a `helm upgrade
--reuse-values` from a chart without `workerImage`) fall back to the defaults. */}}
{{- define "shardset-operator.workerImage" -}}
{{- $worker := .Values.workerImage | default dict }}
{{- $tag := $worker.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" ($worker.repository | default "shardset/shard-worker") $tag }}
{{- end }}

{{- define "shardset-operator.redisName" -}}
{{- printf "%s-redis" (include "shardset-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Restricted pod security for every container of the chart. */}}
{{- define "shardset-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
