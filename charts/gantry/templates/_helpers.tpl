{{/* Full name of the release's objects, at most 63 characters. */}}
{{- define "gantry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object of the chart. */}}
{{- define "gantry.labels" -}}
app.kubernetes.io/name: gantry-operator
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gantry
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | quote }}
{{- end -}}

{{/* Selector labels of the operator pods. */}}
{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: gantry-operator
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
{{- end -}}

{{- define "gantry.serviceAccountName" -}}
{{- default (include "gantry.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "gantry.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "gantry.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) -}}
{{- end -}}

{{/* Prefix of the ClusterRoles the operator binds proxy fleets to (--proxy-role-prefix). */}}
{{- define "gantry.proxyRolePrefix" -}}
{{- printf "%s-proxy" (include "gantry.fullname" .) | trunc 45 | trimSuffix "-" -}}
{{- end -}}
