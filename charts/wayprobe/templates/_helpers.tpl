{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "wayprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full object name: <release>-<name>, or the release name when it already holds the name. */}}
{{- define "wayprobe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wayprobe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods; never change them after a first install. */}}
{{- define "wayprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wayprobe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wayprobe.labels" -}}
helm.sh/chart: {{ include "wayprobe.chart" . }}
{{ include "wayprobe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wayprobe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "wayprobe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wayprobe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository(:tag|@digest) from an image map; $tag is the fallback tag. */}}
{{- define "wayprobe.imageRef" -}}
{{- $img := index . 0 -}}
{{- $fallbackRegistry := index . 1 -}}
{{- $fallbackRepo := index . 2 -}}
{{- $fallbackTag := index . 3 -}}
{{- $registry := default $fallbackRegistry $img.registry -}}
{{- $repo := default $fallbackRepo $img.repository -}}
{{- $ref := ternary (printf "%s/%s" $registry $repo) $repo (ne $registry "") -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $ref $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default $fallbackTag $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "wayprobe.image" -}}
{{- include "wayprobe.imageRef" (list .Values.image "" .Values.image.repository .Chart.AppVersion) -}}
{{- end -}}

{{- define "wayprobe.sidecarImage" -}}
{{- $main := .Values.image -}}
{{- $side := .Values.browser.sidecar.image -}}
{{- if $side.repository -}}
{{- include "wayprobe.imageRef" (list $side $main.registry $side.repository .Chart.AppVersion) -}}
{{- else -}}
{{- include "wayprobe.imageRef" (list (dict "registry" (default $main.registry $side.registry) "repository" $main.repository "tag" (default $main.tag $side.tag) "digest" (default $main.digest $side.digest)) "" $main.repository .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap the journeys come from. */}}
{{- define "wayprobe.journeysConfigMap" -}}
{{- default (printf "%s-journeys" (include "wayprobe.fullname" .)) .Values.journeys.existingConfigMap -}}
{{- end -}}

{{/* Memory of the container that runs the browsers, in MiB. */}}
{{- define "wayprobe.browserMemoryMiB" -}}
{{- mul (int .Values.browser.maxSessions) (int .Values.browser.memoryPerSessionMiB) -}}
{{- end -}}

{{/* wayprobe's resources: the values, or computed from the browser sessions. */}}
{{- define "wayprobe.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else -}}
{{- $mem := 64 -}}
{{- if eq .Values.browser.mode "builtin" -}}
{{- $mem = add $mem (include "wayprobe.browserMemoryMiB" . | int) -}}
{{- end -}}
requests:
  cpu: 100m
  memory: {{ $mem }}Mi
limits:
  memory: {{ $mem }}Mi
{{- end -}}
{{- end -}}

{{- define "wayprobe.sidecarResources" -}}
{{- if .Values.browser.sidecar.resources -}}
{{- toYaml .Values.browser.sidecar.resources -}}
{{- else -}}
{{- $mem := add 32 (include "wayprobe.browserMemoryMiB" . | int) -}}
requests:
  cpu: 100m
  memory: {{ $mem }}Mi
limits:
  memory: {{ $mem }}Mi
{{- end -}}
{{- end -}}

{{/* The WebDriver URL wayprobe uses, if not its own chromedriver. */}}
{{- define "wayprobe.webdriverUrl" -}}
{{- if eq .Values.browser.mode "sidecar" -}}
http://127.0.0.1:{{ .Values.browser.sidecar.port }}
{{- else if eq .Values.browser.mode "remote" -}}
{{- required "browser.remoteUrl is required with browser.mode=remote" .Values.browser.remoteUrl -}}
{{- end -}}
{{- end -}}
