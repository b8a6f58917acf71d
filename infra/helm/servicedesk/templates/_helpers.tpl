{{/* Names and labels. */}}
{{- define "servicedesk.fullname" -}}
{{- printf "%s-servicedesk" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "servicedesk.labels" -}}
app.kubernetes.io/name: servicedesk
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "servicedesk.selector" -}}
app.kubernetes.io/name: servicedesk
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "servicedesk.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .binary (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{- define "servicedesk.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "servicedesk.fullname" .) -}}
{{- end -}}

{{- define "servicedesk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "servicedesk.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The environment every process shares: the config values and the secret keys. */}}
{{- define "servicedesk.env" -}}
- name: KAFKA_BROKERS
  value: {{ .Values.config.kafkaBrokers | quote }}
- name: RUST_LOG
  value: {{ .Values.config.logLevel | quote }}
{{- range $key := list "DATABASE_URL" "REDIS_URL" "S3_ACCESS_KEY_ID" "S3_SECRET_ACCESS_KEY" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "servicedesk.secretName" $ }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{/*
A component's Deployment. Arguments (dict): root, component, binary, values (its block),
port, portName, env (extra list of name/value), readyPath (the readiness probe's path; /readyz).
*/}}
{{- define "servicedesk.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "servicedesk.fullname" $root }}-{{ .component }}
  labels:
    {{- include "servicedesk.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ $root.Values.rollingUpdate.maxSurge }}
      maxUnavailable: {{ $root.Values.rollingUpdate.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "servicedesk.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "servicedesk.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
      {{- if $root.Values.monitoring.annotations }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
      {{- end }}
    spec:
      serviceAccountName: {{ include "servicedesk.serviceAccountName" $root }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      affinity:
        podAntiAffinity:
          {{- if eq $root.Values.podAntiAffinity "required" }}
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: {{ $root.Values.topologyKey }}
              labelSelector:
                matchLabels:
                  {{- include "servicedesk.selector" . | nindent 18 }}
          {{- else }}
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: {{ $root.Values.topologyKey }}
                labelSelector:
                  matchLabels:
                    {{- include "servicedesk.selector" . | nindent 20 }}
          {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "servicedesk.image" . }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          env:
            {{- include "servicedesk.env" $root | nindent 12 }}
            {{- range .env }}
            - name: {{ .name }}
              {{- if .fieldPath }}
              valueFrom:
                fieldRef: { fieldPath: {{ .fieldPath }} }
              {{- else }}
              value: {{ .value | quote }}
              {{- end }}
            {{- end }}
            {{- range $name, $value := $v.env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          readinessProbe:
            httpGet: { path: {{ .readyPath | default "/readyz" | quote }}, port: {{ .portName }} }
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          livenessProbe:
            httpGet: { path: /healthz, port: {{ .portName }} }
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          startupProbe:
            httpGet: { path: /healthz, port: {{ .portName }} }
            periodSeconds: 2
            failureThreshold: 30
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
{{- end -}}
