{{- define "egress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "egress.fullname" -}}
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

{{- define "egress.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "egress.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "egress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "egress.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "egress.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding config.yaml: the operator's, or the one this chart renders. */}}
{{- define "egress.configSecretName" -}}
{{- if .Values.existingConfigSecret.name }}
{{- .Values.existingConfigSecret.name }}
{{- else }}
{{- include "egress.fullname" . }}
{{- end }}
{{- end }}

{{/*
Install-time checks, each naming the value to set. The service would refuse the same config
at start-up, but only after the pods were scheduled; here `helm install` fails at once.
*/}}
{{- define "egress.validate" -}}
{{- $e := .Values.egress }}
{{- if not .Values.existingConfigSecret.name }}
{{- if not $e.ws_url }}
{{- fail "egress.ws_url is required (the LiveKit server's WebSocket URL)" }}
{{- end }}
{{- $redis := $e.redis | default dict }}
{{- if not (or $redis.address $redis.sentinel_addresses $redis.cluster_addresses) }}
{{- fail "egress.redis.address is required (the Redis livekit-server uses)" }}
{{- end }}
{{- if not .Values.existingSecret.name }}
{{- if not $e.api_key }}
{{- fail "egress.api_key is required, or existingSecret.name" }}
{{- end }}
{{- if not $e.api_secret }}
{{- fail "egress.api_secret is required, or existingSecret.name" }}
{{- end }}
{{- end }}
{{- if and $e.enable_chrome_sandbox (eq .Values.seccompProfile.type "RuntimeDefault") }}
{{- fail "egress.enable_chrome_sandbox needs seccompProfile.type Localhost (deploy/seccomp/chrome.json on every node) or Unconfined: the RuntimeDefault profile blocks Chrome's sandbox" }}
{{- end }}
{{- end }}
{{- end }}
