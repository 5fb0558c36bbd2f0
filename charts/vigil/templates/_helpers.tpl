{{/* The chart name. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: release-chart, or the release alone when it holds the chart's name. */}}
{{- define "vigil.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "broker"). */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret the services read their credentials from. */}}
{{- define "vigil.secretName" -}}
{{- default (printf "%s-secrets" (include "vigil.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* NATS URL: the bundled cluster's Service, or the external one. */}}
{{- define "vigil.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" (include "vigil.fullname" .) -}}
{{- else -}}
{{- required "nats.url (or config.nats.url) is required when nats.enabled is false" (default .Values.nats.url (dig "nats" "url" "" .Values.config)) -}}
{{- end -}}
{{- end -}}

{{/* The bundled PostgreSQL's password: as set, else one generated for this render (kept in
     .Values so that the database's Secret and vigil's URL agree); an installed release keeps the
     password its Secret holds. */}}
{{- define "vigil.postgresPassword" -}}
{{- if not .Values.postgresql.auth.password -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-postgresql" (include "vigil.fullname" .)) -}}
{{- $kept := dig "data" "password" "" ($existing | default dict) | b64dec -}}
{{- $_ := set .Values.postgresql.auth "password" (default (randAlphaNum 24) $kept) -}}
{{- end -}}
{{- .Values.postgresql.auth.password -}}
{{- end -}}

{{- define "vigil.databaseUrl" -}}
{{- if .Values.secrets.databaseUrl -}}
{{- .Values.secrets.databaseUrl -}}
{{- else if .Values.postgresql.enabled -}}
{{- $auth := .Values.postgresql.auth -}}
{{- printf "postgres://%s:%s@%s-postgresql:5432/%s" $auth.username (include "vigil.postgresPassword" .) (include "vigil.fullname" .) $auth.database -}}
{{- else -}}
{{- required "secrets.databaseUrl (or secrets.existingSecret) is required when postgresql.enabled is false" "" -}}
{{- end -}}
{{- end -}}

{{/* The effective config tree: .Values.config with nats.url filled in. */}}
{{- define "vigil.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $nats := dig "nats" dict $config -}}
{{- if not (dig "url" "" $nats) -}}
{{- $_ := set $nats "url" (include "vigil.natsUrl" .) -}}
{{- end -}}
{{- $_ := set $config "nats" $nats -}}
{{- /* A bundled JetStream cluster keeps as many copies of every stream as it has nodes (at
most 5), unless config.streams.replicas says otherwise. */ -}}
{{- $streams := dig "streams" dict $config -}}
{{- if and .Values.nats.enabled (not (hasKey $streams "replicas")) -}}
{{- $_ := set $streams "replicas" (min (int .Values.nats.replicas) 5) -}}
{{- end -}}
{{- $_ := set $config "streams" $streams -}}
{{- /* The orchestrator scores through the predictor's Service, over TLS when the predictor
serves it, unless config.orchestrator.predictor_url names another. */ -}}
{{- $orchestrator := dig "orchestrator" dict $config -}}
{{- if not (dig "predictor_url" "" $orchestrator) -}}
{{- $tls := dig "predictor" "tls" "cert_file" "" $config -}}
{{- $_ := set $orchestrator "predictor_url" (printf "%s://%s-predictor:50051" (ternary "https" "http" (ne $tls "")) (include "vigil.fullname" .)) -}}
{{- end -}}
{{- $_ := set $config "orchestrator" $orchestrator -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
TOML of a table: (dict "table" $map "prefix" "a.b"). Helm's own toToml writes every number as a
float (256.0), which vigil's integer keys refuse; here whole numbers are written as integers
(which its float keys accept) and other numbers as they are.
*/}}
{{- define "vigil.toml" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .table }}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) }}
{{ include "vigil.tomlKey" $key }} = {{ include "vigil.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- if kindIs "map" $value }}
{{- $name := ternary (include "vigil.tomlKey" $key) (printf "%s.%s" $prefix (include "vigil.tomlKey" $key)) (eq $prefix "") }}

[{{ $name }}]
{{- include "vigil.toml" (dict "table" $value "prefix" $name) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "vigil.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "vigil.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{- printf "%d" (int64 .) -}}{{- else -}}{{- printf "%v" . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "uint64" .) -}}
{{- printf "%d" . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "vigil.tomlValue" $v }}{{ end -}}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $k := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ include "vigil.tomlKey" $k }} = {{ include "vigil.tomlValue" (get $ $k) }}{{ end -}} }
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}
