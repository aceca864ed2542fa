// Package enroll decides, exactly as Istio ambient does, whether a pod belongs in the
// mesh: the pod's own label wins, then its namespace's; host-network pods and pods
// that carry their own sidecar are never captured.
package enroll

import (
	corev1 "k8s.io/api/core/v1"
)

// Label keys and values shared with Istio ambient.
const (
	DataplaneModeLabel = "istio.io/dataplane-mode"
	ModeAmbient        = "ambient"
	ModeNone           = "none"
	// RedirectionAnnotation is the status annotation istio-cni writes on an enrolled pod.
	RedirectionAnnotation = "ambient.istio.io/redirection"
	RedirectionEnabled    = "enabled"
	sidecarContainer      = "istio-proxy"
)

// Decision says whether a pod is in the mesh, and why (for logs and status).
type Decision struct {
	Enroll bool
	Reason string
}

// Decide applies Istio's rules to a pod and its namespace's labels (nil: unknown
// namespace, treated as unlabelled).
func Decide(pod *corev1.Pod, namespaceLabels map[string]string) Decision {
	if pod.Spec.HostNetwork {
		return Decision{false, "host-network pod"}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == sidecarContainer {
			return Decision{false, "pod has an istio-proxy sidecar"}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == sidecarContainer {
			return Decision{false, "pod has an istio-proxy sidecar"}
		}
	}
	switch pod.Labels[DataplaneModeLabel] {
	case ModeAmbient:
		return Decision{true, "pod labelled " + DataplaneModeLabel + "=" + ModeAmbient}
	case ModeNone:
		return Decision{false, "pod labelled " + DataplaneModeLabel + "=" + ModeNone}
	}
	if namespaceLabels[DataplaneModeLabel] == ModeAmbient {
		return Decision{true, "namespace labelled " + DataplaneModeLabel + "=" + ModeAmbient}
	}
	return Decision{false, "neither the pod nor its namespace is labelled " + DataplaneModeLabel + "=" + ModeAmbient}
}

// Terminal says whether the pod's containers have all ended for good. A pod that is
// being deleted is not terminal yet: it keeps its capture while it shuts down
// gracefully, as with istio-cni, and leaves the mesh when it is gone.
func Terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// PodIPs is the pod's addresses from its status (status.podIPs, else status.podIP).
func PodIPs(pod *corev1.Pod) []string {
	var out []string
	for _, ip := range pod.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && pod.Status.PodIP != "" {
		out = []string{pod.Status.PodIP}
	}
	return out
}

// ServiceAccount is the account the pod runs as ("default" when unset), the one its
// SPIFFE identity names.
func ServiceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}
