{{/* The labels every object of the release carries. */}}
{{- define "ztunnel.labels" -}}
app.kubernetes.io/name: ztunnel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ztunnel
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference: a name with a "/" is used whole, else hub/name:tag. */}}
{{- define "ztunnel.imageRef" -}}
{{- $name := index . 0 -}}{{- $root := index . 1 -}}
{{- if contains "/" $name -}}
{{ $name }}
{{- else -}}
{{ $root.Values.hub }}/{{ $name }}:{{ $root.Values.tag | default $root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Namespaces the agent never enrolls: the values' list plus the release's own. */}}
{{- define "ztunnel.excludeNamespaces" -}}
{{- append .Values.cni.excludeNamespaces .Release.Namespace | uniq | join "," -}}
{{- end -}}

{{/* Refuse what this chart cannot do, with a message saying so. */}}
{{- define "ztunnel.validate" -}}
{{- range $k := list "caAddress" "xdsAddress" -}}
{{- $v := index $.Values $k -}}
{{- if and $v (hasPrefix "http://" $v) -}}
{{- fail (printf "%s: %q: istiod serves xDS and its CA over TLS only: use https://HOST:15012" $k $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* istioCA: true when certificates come from Istio's CA (caAddress, or xdsAddress). */}}
{{- define "ztunnel.istioCA" -}}
{{- if or .Values.caAddress .Values.xdsAddress -}}true{{- end -}}
{{- end -}}
