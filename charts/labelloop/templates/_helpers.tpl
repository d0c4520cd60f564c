{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "labelloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: the prefix of every resource. */}}
{{- define "labelloop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every resource; call with (dict "root" $ "component" "ingest"). */}}
{{- define "labelloop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: labelloop
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "labelloop.selectorLabels" . }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "ingest"). */}}
{{- define "labelloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "labelloop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "labelloop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "labelloop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "labelloop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the services find their dependencies: the chart's own, or the external ones. */}}
{{- define "labelloop.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s-kafka:9092" (include "labelloop.fullname" .) }}
{{- else }}
{{- required "kafka.external.bootstrap is required when kafka.enabled=false" .Values.kafka.external.bootstrap }}
{{- end }}
{{- end }}

{{- define "labelloop.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s-redis:6379/0" (include "labelloop.fullname" .) }}
{{- else }}
{{- required "redis.external.url is required when redis.enabled=false" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{- define "labelloop.tritonGrpcUrl" -}}
{{- if .Values.triton.enabled }}
{{- printf "%s-triton:8001" (include "labelloop.fullname" .) }}
{{- else }}
{{- required "triton.external.grpcUrl is required when triton.enabled=false" .Values.triton.external.grpcUrl }}
{{- end }}
{{- end }}

{{- define "labelloop.mlflowUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s-mlflow:5000" (include "labelloop.fullname" .) }}
{{- else }}
{{- required "mlflow.external.trackingUri is required when mlflow.enabled=false" .Values.mlflow.external.trackingUri }}
{{- end }}
{{- end }}

{{/* The Secret holding the gRPC APIs' certificate: the existing one, or cert-manager's. */}}
{{- define "labelloop.grpcTlsSecret" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-grpc-tls" (include "labelloop.fullname" .) }}
{{- else }}
{{- required "tls.existingSecret (or tls.certManager.enabled) is required when tls.enabled=true" .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{- define "labelloop.modelRepositoryClaim" -}}
{{- default (printf "%s-model-repository" (include "labelloop.fullname" .)) .Values.modelRepository.existingClaim }}
{{- end }}

{{/* The media root (LABELLOOP_MEDIA_ROOT): media.root, else file:///media on the media volume. */}}
{{- define "labelloop.mediaRoot" -}}
{{- default "file:///media" .Values.media.root }}
{{- end }}

{{/* "true" when media lives on the shared volume (no media.root given), else "". */}}
{{- define "labelloop.mediaOnVolume" -}}
{{- if not .Values.media.root }}true{{ end }}
{{- end }}

{{- define "labelloop.mediaClaim" -}}
{{- default (printf "%s-media" (include "labelloop.fullname" .)) .Values.media.existingClaim }}
{{- end }}

{{/* Environment of a Labelloop service; call with (dict "root" $ "svc" $svc). */}}
{{- define "labelloop.env" -}}
{{- $root := .root }}
- name: LABELLOOP_KAFKA_BOOTSTRAP
  value: {{ include "labelloop.kafkaBootstrap" $root | quote }}
- name: LABELLOOP_TOPIC_PREFIX
  value: {{ $root.Values.config.topicPrefix | quote }}
- name: LABELLOOP_REDIS_URL
  value: {{ include "labelloop.redisUrl" $root | quote }}
{{- with $root.Values.redis.existingSecret }}
- name: LABELLOOP_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.redis.existingSecretPasswordKey }}
{{- end }}
- name: LABELLOOP_KAFKA_SECURITY_PROTOCOL
  value: {{ $root.Values.kafka.security.protocol | quote }}
{{- with $root.Values.kafka.security.saslMechanism }}
- name: LABELLOOP_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- end }}
- name: LABELLOOP_KAFKA_USERNAME
  value: {{ $root.Values.kafka.security.username | quote }}
- name: LABELLOOP_KAFKA_PASSWORD_FILE
  value: ""
{{- with $root.Values.kafka.security.existingSecret }}
- name: LABELLOOP_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.kafka.security.existingSecretPasswordKey }}
{{- end }}
{{- if $root.Values.kafka.security.caSecret }}
- name: LABELLOOP_KAFKA_CA_FILE
  value: /etc/labelloop/kafka-ca/ca.crt
{{- end }}
- name: LABELLOOP_KAFKA_TRANSACTIONS
  value: {{ $root.Values.kafka.transactions | default false | quote }}
- name: LABELLOOP_TOPIC_REPLICATION_FACTOR
  value: {{ $root.Values.kafka.topicReplicationFactor | quote }}
- name: LABELLOOP_TOPIC_MIN_INSYNC_REPLICAS
  value: {{ $root.Values.kafka.topicMinInsyncReplicas | quote }}
- name: LABELLOOP_REDIS_PASSWORD_FILE
  value: ""
{{- with $root.Values.auth.existingSecret }}
- name: LABELLOOP_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.auth.existingSecretKey }}
      optional: true
{{- end }}
{{- if and $root.Values.tls.enabled .svc.grpcPort }}
- name: LABELLOOP_GRPC_TLS_CERT_FILE
  value: /etc/labelloop/grpc-tls/tls.crt
- name: LABELLOOP_GRPC_TLS_KEY_FILE
  value: /etc/labelloop/grpc-tls/tls.key
{{- if $root.Values.tls.clientCaSecret }}
- name: LABELLOOP_GRPC_TLS_CLIENT_CA_FILE
  value: /etc/labelloop/grpc-client-ca/ca.crt
{{- end }}
{{- end }}
{{- if and $root.Values.mlflow.enabled $root.Values.mlflow.auth.existingSecret }}
- name: MLFLOW_TRACKING_USERNAME
  value: {{ $root.Values.mlflow.auth.username | quote }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.mlflow.auth.existingSecret }}
      key: {{ $root.Values.mlflow.auth.existingSecretPasswordKey }}
{{- end }}
- name: LABELLOOP_TRITON_GRPC_URL
  value: {{ include "labelloop.tritonGrpcUrl" $root | quote }}
- name: LABELLOOP_MLFLOW_TRACKING_URI
  value: {{ include "labelloop.mlflowUri" $root | quote }}
- name: LABELLOOP_MODEL_REPOSITORY
  value: /models
- name: LABELLOOP_MEDIA_ROOT
  value: {{ include "labelloop.mediaRoot" $root | quote }}
- name: LABELLOOP_LOG_LEVEL
  value: {{ $root.Values.config.logLevel | quote }}
{{- with .svc.grpcPort }}
- name: LABELLOOP_GRPC_PORT
  value: {{ . | quote }}
{{- end }}
- name: LABELLOOP_METRICS_PORT
  value: {{ .svc.metricsPort | quote }}
{{- with .svc.httpPort }}
- name: LABELLOOP_WEB_HOST
  value: "0.0.0.0"
- name: LABELLOOP_WEB_PORT
  value: {{ . | quote }}
- name: LABELLOOP_HUMAN_TASKS_ADDR
  value: "{{ include "labelloop.fullname" $root }}-human-tasks:{{ $root.Values.services.humanTasks.grpcPort }}"
- name: LABELLOOP_INGEST_ADDR
  value: "{{ include "labelloop.fullname" $root }}-ingest:{{ $root.Values.services.ingest.grpcPort }}"
- name: LABELLOOP_SECURE_COOKIE
  value: {{ $.svc.secureCookie | default false | quote }}
{{- if $root.Values.tls.enabled }}
- name: LABELLOOP_GRPC_CA_FILE
  value: /etc/labelloop/grpc-tls/ca.crt
{{- if $root.Values.tls.clientCaSecret }}
- name: LABELLOOP_GRPC_CLIENT_CERT_FILE
  value: /etc/labelloop/grpc-tls/tls.crt
- name: LABELLOOP_GRPC_CLIENT_KEY_FILE
  value: /etc/labelloop/grpc-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- with .svc.llm }}
- name: LABELLOOP_LLM_BASE_URL
  value: {{ .baseUrl | quote }}
- name: LABELLOOP_LLM_MODEL
  value: {{ .model | quote }}
- name: LABELLOOP_LLM_ASK
  value: {{ .ask | quote }}
- name: LABELLOOP_LLM_CALLS_PER_HOUR
  value: {{ .callsPerHour | quote }}
{{- if .apiKey.existingSecret }}
- name: LABELLOOP_LLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .apiKey.existingSecret }}
      key: {{ .apiKey.key }}
{{- end }}
{{- end }}
{{- if and .svc.sessionSecret .svc.sessionSecret.existingSecret }}
- name: LABELLOOP_SESSION_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .svc.sessionSecret.existingSecret }}
      key: {{ .svc.sessionSecret.key }}
{{- end }}
- name: TMPDIR
  value: /tmp
{{- range $k, $v := .svc.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- with $root.Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
