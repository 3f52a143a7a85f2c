{{/*
Naming and labels shared by every template.
*/}}

{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "nim-autoscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name alone when it already contains the chart
name. Truncated to 63 characters; longer suffixes below stay within 253 (DNS subdomain).
*/}}
{{- define "nim-autoscaler.fullname" -}}
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

{{- define "nim-autoscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nim-autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nim-autoscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nim-autoscaler.labels" -}}
helm.sh/chart: {{ include "nim-autoscaler.chart" . }}
{{ include "nim-autoscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nim-autoscaler
{{- end }}

{{- define "nim-autoscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nim-autoscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nim-autoscaler.policyConfigMapName" -}}
{{- default (printf "%s-policies" (include "nim-autoscaler.fullname" .)) .Values.existingPolicyConfigMap }}
{{- end }}

{{- define "nim-autoscaler.historyConfigMapName" -}}
{{- default (printf "%s-history" (include "nim-autoscaler.fullname" .)) .Values.historyConfigMapName }}
{{- end }}

{{/* The history ConfigMaps' names: the shards <name>-0 .. <name>-(N-1), then <name> itself
(the single ConfigMap of earlier versions, migrated and deleted by the controller). */}}
{{- define "nim-autoscaler.historyConfigMapNames" -}}
{{- $name := include "nim-autoscaler.historyConfigMapName" . }}
{{- $names := list }}
{{- $shards := int (default 1 .Values.shards) }}
{{- $count := mul (div (add (int .Values.historyShards) (sub $shards 1)) $shards) $shards }}
{{- range $i := until (int $count) }}
{{- $names = append $names (printf "%s-%d" $name $i) }}
{{- end }}
{{- $names = append $names $name }}
{{- toJson $names }}
{{- end }}

{{/* The CustomResourceDefinitions of the custom target kinds (read for their scale paths). */}}
{{- define "nim-autoscaler.targetCRDs" -}}
{{- $names := list }}
{{- range .Values.targetKinds }}
{{- if not (has .apiGroup (list "" "apps")) }}
{{- $names = append $names (printf "%s.%s" .resource .apiGroup) }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{- define "nim-autoscaler.leaseName" -}}
{{- default (include "nim-autoscaler.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "nim-autoscaler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Prometheus job label of the controller's metrics (the Service name). */}}
{{- define "nim-autoscaler.jobSelector" -}}
job="{{ include "nim-autoscaler.fullname" . }}"
{{- end }}

{{/*
Rules on the scale targets and their pods; used by the namespaced Roles and by the ClusterRole.
Least privilege: read and watch pods; read, watch and annotate each target kind (the controller
keeps the targets' replicas from a watch, as the pods); read and write its /scale; record Events.
In dry-run the controller writes nothing, so only the reads are granted.
*/}}
{{- define "nim-autoscaler.targetRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- range .Values.targetKinds }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource }}]
  verbs: {{ if $.Values.dryRun }}[get, list, watch]{{ else }}[get, list, watch, patch]{{ end }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource }}/scale]
  verbs: {{ if $.Values.dryRun }}[get]{{ else }}[get, update, patch]{{ end }}
{{- end }}
- apiGroups: [autoscaling.nim-autoscaler.io]
  resources: [scalingpolicies]
  verbs: [get, list, watch]
{{- if not .Values.dryRun }}
- apiGroups: [autoscaling.nim-autoscaler.io]
  resources: [scalingpolicies/status]
  verbs: [update, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.drainAware }}
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
{{- end }}
{{- end }}

{{/*
Consistency checks that JSON Schema cannot express (comparisons between values); each fails the
render with a message. Everything expressible lives in values.schema.json, which `helm lint`
also enforces (Helm 4's lint only logs a template `fail`).
*/}}
{{- define "nim-autoscaler.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if le (float64 $le.leaseDuration) (float64 $le.renewDeadline) }}
{{- fail "leaderElection.leaseDuration must be greater than leaderElection.renewDeadline" }}
{{- end }}
{{- if le (float64 $le.renewDeadline) (float64 $le.retryPeriod) }}
{{- fail "leaderElection.renewDeadline must be greater than leaderElection.retryPeriod" }}
{{- end }}
{{- if .Values.watchNamespaces }}
{{- range $file, $policy := .Values.policies }}
{{- $ns := default "default" $policy.metadata.namespace }}
{{- if not (has $ns $.Values.watchNamespaces) }}
{{- fail (printf "policies.%s: namespace %q is not in watchNamespaces, so the controller has no access to its target" $file $ns) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Data of the settings ConfigMap; also hashed into the pod template's checksum annotation. */}}
{{- define "nim-autoscaler.configData" -}}
AUTOSCALER_PROMETHEUS_URL: {{ .Values.prometheus.url | quote }}
AUTOSCALER_PROMETHEUS_TIMEOUT: {{ .Values.prometheus.timeout | quote }}
AUTOSCALER_PROMETHEUS_CONCURRENCY: {{ .Values.prometheus.concurrency | quote }}
AUTOSCALER_PROMETHEUS_INSECURE_SKIP_VERIFY: {{ .Values.prometheus.insecureSkipVerify | quote }}
{{- with .Values.prometheus.headers }}
{{- $pairs := list }}
{{- range $name, $value := . }}
{{- $pairs = append $pairs (printf "%s=%s" $name $value) }}
{{- end }}
AUTOSCALER_PROMETHEUS_HEADERS: {{ join "," $pairs | quote }}
{{- end }}
{{- if .Values.prometheus.bearerToken.existingSecret }}
AUTOSCALER_PROMETHEUS_BEARER_TOKEN_FILE: "/etc/nim-autoscaler/prometheus-token/token"
{{- end }}
{{- if or .Values.prometheus.ca.configMap .Values.prometheus.ca.secret }}
AUTOSCALER_PROMETHEUS_CA_FILE: "/etc/nim-autoscaler/prometheus-ca/ca.crt"
{{- end }}
AUTOSCALER_POLICY_DIR: "/etc/nim-autoscaler/policies"
AUTOSCALER_INTERVAL: {{ .Values.interval | quote }}
AUTOSCALER_ALIGN_TO_RULES: {{ .Values.alignToRules | quote }}
AUTOSCALER_DRY_RUN: {{ .Values.dryRun | quote }}
AUTOSCALER_DRAIN_AWARE: {{ .Values.drainAware | quote }}
AUTOSCALER_HPA_TOLERANCE: {{ .Values.hpa.tolerance | quote }}
AUTOSCALER_HPA_DOWNSCALE_STABILIZATION: {{ .Values.hpa.downscaleStabilizationSeconds | quote }}
AUTOSCALER_LOG_FORMAT: {{ .Values.logFormat | quote }}
AUTOSCALER_LOG_LEVEL: {{ .Values.logLevel | quote }}
AUTOSCALER_METRICS_PORT: {{ .Values.metricsPort | quote }}
AUTOSCALER_NAMESPACES: {{ join "," .Values.watchNamespaces | quote }}
AUTOSCALER_HISTORY_CONFIGMAP: {{ include "nim-autoscaler.historyConfigMapName" . | quote }}
AUTOSCALER_HISTORY_SHARDS: {{ .Values.historyShards | quote }}
AUTOSCALER_HISTORY_SAVE_INTERVAL: {{ .Values.historySaveInterval | quote }}
AUTOSCALER_SHARDS: {{ .Values.shards | quote }}
AUTOSCALER_LEADER_ELECTION: {{ .Values.leaderElection.enabled | quote }}
AUTOSCALER_LEADER_ELECTION_LEASE_NAME: {{ include "nim-autoscaler.leaseName" . | quote }}
AUTOSCALER_LEADER_ELECTION_LEASE_DURATION: {{ .Values.leaderElection.leaseDuration | quote }}
AUTOSCALER_LEADER_ELECTION_RENEW_DEADLINE: {{ .Values.leaderElection.renewDeadline | quote }}
AUTOSCALER_LEADER_ELECTION_RETRY_PERIOD: {{ .Values.leaderElection.retryPeriod | quote }}
{{- end }}
