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

{{/* Refuse what this chart cannot do yet, with a message saying so. */}}
{{- define "ztunnel.validate" -}}
{{- if or .Values.caAddress .Values.xdsAddress -}}
{{- fail "caAddress/xdsAddress: Istio's control plane is not supported by this chart yet; leave both empty for standalone mode (the node agent builds the mesh state from the API server)" -}}
{{- end -}}
{{- end -}}
