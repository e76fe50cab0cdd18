{{/*
Names are fixed, not prefixed with the release: mirrord.json targets
deployment/vote-api, and the docs and alerts name vote-api, postgresql and redis.
So install one release per namespace (conference-app in the docs).
*/}}

{{- define "conference-app.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conference-app.secretName" -}}conference-app-secrets{{- end }}

{{/* Labels shared by every object; call with (dict "ctx" $ "name" "vote-api"). */}}
{{- define "conference-app.labels" -}}
helm.sh/chart: {{ include "conference-app.chart" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: conference-app
{{ include "conference-app.selectorLabels" . }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "name" "vote-api"). */}}
{{- define "conference-app.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{- define "conference-app.voteApiImage" -}}
{{ .Values.voteApi.image.repository }}:{{ .Values.voteApi.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "conference-app.image" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

{{/* The URL printed in the QR codes. */}}
{{- define "conference-app.publicUrl" -}}
{{- if .Values.voteApi.publicUrl -}}
{{ .Values.voteApi.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.host -}}
{{ ternary "https" "http" .Values.ingress.tls.enabled }}://{{ .Values.ingress.host }}
{{- end -}}
{{- end }}

{{/* Pod-level security context for a given UID. */}}
{{- define "conference-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: nothing to escalate, nothing to write outside volumes. */}}
{{- define "conference-app.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/*
A secret value: the one given in values, else the one already stored in the
cluster (so upgrades keep it), else a new random one. `helm template` and
--dry-run cannot see the cluster, so they always show a new random value.
Call with (dict "ctx" $ "existing" $existingSecret "key" "ADMIN_TOKEN" "value" .Values.secrets.adminToken).
*/}}
{{- define "conference-app.keptSecret" -}}
{{- if .value -}}
{{ .value }}
{{- else if and .existing .existing.data (hasKey .existing.data .key) -}}
{{ index .existing.data .key | b64dec }}
{{- else -}}
{{ randAlphaNum 32 }}
{{- end -}}
{{- end }}

{{/*
The revision of some secrets, for a pod annotation that rolls the pods when
one changes: 1 on the first install, one more on each upgrade that gives a
value differing from the Secret's. A counter, not a checksum: anyone who can
read pods sees annotations, and an unsalted hash of a password is one
dictionary search away from it. Kept in the Secret under .key. Call with
(dict "ctx" $ "key" "REDIS_PASSWORD_REVISION" "values" (dict "REDIS_PASSWORD" .Values.secrets.redisPassword)).
*/}}
{{- define "conference-app.secretRevision" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "conference-app.secretName" .ctx) -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- $changed := false -}}
{{- range $k, $v := .values -}}
{{- if and $v (ne $v (index $existing.data $k | default "" | b64dec)) -}}
{{- $changed = true -}}
{{- end -}}
{{- end -}}
{{- $revision := index $existing.data .key | b64dec | atoi -}}
{{- if $changed }}{{ add1 $revision }}{{ else }}{{ $revision }}{{ end -}}
{{- else -}}
1
{{- end -}}
{{- end }}

{{- define "conference-app.redisRevision" -}}
{{- include "conference-app.secretRevision" (dict "ctx" . "key" "REDIS_PASSWORD_REVISION" "values" (dict "REDIS_PASSWORD" .Values.secrets.redisPassword)) -}}
{{- end }}

{{- define "conference-app.secretsRevision" -}}
{{- $s := .Values.secrets -}}
{{- include "conference-app.secretRevision" (dict "ctx" . "key" "SECRETS_REVISION" "values" (dict "POSTGRES_PASSWORD" $s.postgresPassword "APP_POSTGRES_PASSWORD" $s.appPostgresPassword "REDIS_PASSWORD" $s.redisPassword "ADMIN_TOKEN" $s.adminToken)) -}}
{{- end }}

{{/* Environment every vote-api process needs (server and seed Job). */}}
{{- define "conference-app.voteApiEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conference-app.secretName" . }}
      key: DATABASE_URL
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "conference-app.secretName" . }}
      key: REDIS_URL
- name: LOG_FORMAT
  value: {{ .Values.voteApi.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.voteApi.logLevel | quote }}
{{- end }}

{{/* NetworkPolicy egress rule: DNS, wherever the cluster runs it (kube-dns, NodeLocal DNSCache). */}}
{{- define "conference-app.np.dns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Init container: on the first install PostgreSQL is still initialising its volume. */}}
{{- define "conference-app.waitForPostgresql" -}}
- name: wait-for-postgresql
  image: {{ include "conference-app.image" .Values.postgresql.image }}
  imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
  command:
    - sh
    - -c
    - until pg_isready -h postgresql -p 5432 -U {{ .Values.postgresql.username }} -d {{ .Values.postgresql.database }} -t 2; do echo "waiting for postgresql"; sleep 2; done
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      cpu: 100m
      memory: 64Mi
  securityContext:
    {{- include "conference-app.containerSecurityContext" . | nindent 4 }}
{{- end }}

{{/*
Init container: creates or updates vote-api's own PostgreSQL role
(files/postgresql-app-role.sql) as the superuser, before vote-api or the seed
Job connects as that role. Idempotent; the superuser password stays in this
container, never in the app's.
*/}}
{{- define "conference-app.postgresqlAppRole" -}}
- name: postgresql-app-role
  image: {{ include "conference-app.image" .Values.postgresql.image }}
  imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
  command:
    - psql
    - -X
    - -q
    - -h
    - postgresql
    - -U
    - {{ .Values.postgresql.username | quote }}
    - -d
    - {{ .Values.postgresql.database | quote }}
    - -v
    - role={{ .Values.postgresql.appUsername }}
    - -v
    - db={{ .Values.postgresql.database }}
    - -f
    - /etc/postgresql-app-role/app-role.sql
  env:
    - name: PGPASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "conference-app.secretName" . }}
          key: POSTGRES_PASSWORD
    # Read by the script with \getenv, so it never shows in a process list.
    - name: APP_POSTGRES_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "conference-app.secretName" . }}
          key: APP_POSTGRES_PASSWORD
    - name: PGCONNECT_TIMEOUT
      value: "5"
  volumeMounts:
    - name: postgresql-app-role
      mountPath: /etc/postgresql-app-role
      readOnly: true
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      cpu: 100m
      memory: 64Mi
  securityContext:
    {{- include "conference-app.containerSecurityContext" . | nindent 4 }}
{{- end }}

{{/* The volume of that init container's script. */}}
{{- define "conference-app.postgresqlAppRoleVolume" -}}
- name: postgresql-app-role
  configMap:
    name: postgresql-app-role
{{- end }}
