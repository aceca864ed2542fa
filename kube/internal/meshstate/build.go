package meshstate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"ztunnel.dev/kube/internal/enroll"
)

// Inputs is everything the config is built from (listers' contents; not modified).
type Inputs struct {
	Pods         []*corev1.Pod
	Services     []*corev1.Service
	Slices       []*discoveryv1.EndpointSlice
	Policies     []Policy
	TrustDomain  string // "cluster.local"
	ClusterID    string // "Kubernetes", as istiod names a single cluster
	DomainSuffix string // "cluster.local"
	// RootNamespace's selector policies select workloads of every namespace.
	RootNamespace string
	// LocalNode's pods are HBONE exactly when LocalEnrolled says so (this agent
	// captured them); other nodes' pods when their redirection annotation says so.
	LocalNode     string
	LocalEnrolled map[types.UID]bool
	// IPOverride gives IPs from the CNI result before the pod's status has them.
	IPOverride map[types.UID][]string
}

// Problem is one object that could not be used as written (logged, and an Event).
type Problem struct {
	Kind, Namespace, Name string
	Reason                string
	// Transient problems (a pod without an IP yet) are expected and not reported
	// as warnings.
	Transient bool
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s/%s: %s", p.Kind, p.Namespace, p.Name, p.Reason)
}

// Build returns the config for the inputs, in a stable order (equal inputs give
// equal bytes, so an unchanged cluster rewrites nothing).
func Build(in Inputs) (Config, []Problem) {
	var problems []Problem
	cfg := Config{Workloads: []Workload{}, Services: []Service{}, Policies: []Policy{}}
	endpointPorts, slicePortProblems := podServicePorts(in)
	problems = append(problems, slicePortProblems...)
	// As istiod: a selector without matchLabels selects nothing (nil), an empty one
	// everything; the root namespace's select in every namespace.
	type selecting struct {
		namespace, key string
		selector       labels.Selector
	}
	var selectors []selecting
	for _, p := range in.Policies {
		if p.Scope == "WorkloadSelector" && p.Selector != nil {
			selectors = append(selectors, selecting{p.Namespace, p.Namespace + "/" + p.Name,
				labels.SelectorFromSet(p.Selector)})
		}
	}
	for _, pod := range in.Pods {
		w, problem := workload(in, pod)
		if problem != nil {
			problems = append(problems, *problem)
			continue
		}
		w.Services = endpointPorts[pod.UID]
		for _, s := range selectors {
			if (s.namespace == pod.Namespace || s.namespace == in.RootNamespace) &&
				s.selector.Matches(labels.Set(pod.Labels)) {
				w.AuthorizationPolicies = append(w.AuthorizationPolicies, s.key)
			}
		}
		cfg.Workloads = append(cfg.Workloads, w)
	}
	for _, s := range in.Services {
		svc, ok := service(in, s)
		if ok {
			cfg.Services = append(cfg.Services, svc)
		}
	}
	cfg.Policies = append(cfg.Policies, in.Policies...)
	sort.Slice(cfg.Workloads, func(i, j int) bool { return cfg.Workloads[i].UID < cfg.Workloads[j].UID })
	sort.Slice(cfg.Services, func(i, j int) bool { return cfg.Services[i].Hostname < cfg.Services[j].Hostname })
	sort.Slice(cfg.Policies, func(i, j int) bool {
		a, b := cfg.Policies[i], cfg.Policies[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	for i := range cfg.Workloads {
		sort.Strings(cfg.Workloads[i].AuthorizationPolicies)
	}
	return cfg, problems
}

func workload(in Inputs, pod *corev1.Pod) (Workload, *Problem) {
	problem := func(reason string, transient bool) *Problem {
		return &Problem{"Pod", pod.Namespace, pod.Name, reason, transient}
	}
	if enroll.Terminal(pod) {
		return Workload{}, problem("terminated", true)
	}
	if pod.Spec.HostNetwork {
		// It shares the node's address with every other host-network pod.
		return Workload{}, problem("host-network pod: not a mesh workload", true)
	}
	ips := in.IPOverride[pod.UID]
	if len(ips) == 0 {
		ips = enroll.PodIPs(pod)
	}
	if len(ips) == 0 {
		return Workload{}, problem("no IP yet", true)
	}
	name, kind := workloadNameAndType(pod)
	w := Workload{
		UID:               in.ClusterID + "//v1/Pod/" + pod.Namespace + "/" + pod.Name,
		Name:              pod.Name,
		Namespace:         pod.Namespace,
		ServiceAccount:    enroll.ServiceAccount(pod),
		TrustDomain:       in.TrustDomain,
		WorkloadIPs:       ips,
		Protocol:          "TCP",
		Node:              pod.Spec.NodeName,
		ClusterID:         in.ClusterID,
		WorkloadName:      name,
		WorkloadType:      kind,
		CanonicalName:     firstLabel(pod.Labels, name, "service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
		CanonicalRevision: firstLabel(pod.Labels, "latest", "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"),
		Status:            "Unhealthy",
	}
	if pod.Spec.NodeName == in.LocalNode {
		if in.LocalEnrolled[pod.UID] {
			w.Protocol = "HBONE"
		}
	} else if pod.Annotations[enroll.RedirectionAnnotation] == enroll.RedirectionEnabled {
		w.Protocol = "HBONE"
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			w.Status = "Healthy"
		}
	}
	return w, nil
}

// workloadNameAndType follows istiod: a ReplicaSet made by a Deployment names the
// Deployment (its name without the pod-template-hash), other controllers their own
// name, a bare pod itself.
func workloadNameAndType(pod *corev1.Pod) (string, string) {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			if hash := pod.Labels["pod-template-hash"]; hash != "" && strings.HasSuffix(o.Name, "-"+hash) {
				return strings.TrimSuffix(o.Name, "-"+hash), "deployment"
			}
			return o.Name, "replicaset"
		case "Job":
			return o.Name, "job"
		default:
			return o.Name, strings.ToLower(o.Kind)
		}
	}
	return pod.Name, "pod"
}

func firstLabel(l map[string]string, fallback string, keys ...string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return fallback
}

func service(in Inputs, s *corev1.Service) (Service, bool) {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return Service{}, false
	}
	out := Service{
		Name:      s.Name,
		Namespace: s.Namespace,
		Hostname:  s.Name + "." + s.Namespace + ".svc." + in.DomainSuffix,
		VIPs:      []string{},
		Ports:     map[string]int32{},
	}
	for _, ip := range s.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			out.VIPs = append(out.VIPs, "/"+ip)
		}
	}
	for _, p := range s.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		target := int32(0) // a named target port: each endpoint says its number
		switch {
		case p.TargetPort.Type == 0 && p.TargetPort.IntVal != 0:
			target = p.TargetPort.IntVal
		case p.TargetPort.Type == 0:
			target = p.Port
		}
		out.Ports[strconv.Itoa(int(p.Port))] = target
	}
	return out, true
}

// podServicePorts maps each pod that an EndpointSlice names to its services and
// the target port each service port has on it ("ns/hostname" -> {port: target}).
// EndpointSlices resolve named target ports per pod, as kube-proxy uses them.
func podServicePorts(in Inputs) (map[types.UID]map[string]map[string]int32, []Problem) {
	services := map[types.NamespacedName]*corev1.Service{}
	for _, s := range in.Services {
		services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	out := map[types.UID]map[string]map[string]int32{}
	var problems []Problem
	reported := map[string]bool{}
	for _, slice := range in.Slices {
		name := slice.Labels[discoveryv1.LabelServiceName]
		svc := services[types.NamespacedName{Namespace: slice.Namespace, Name: name}]
		if svc == nil {
			continue
		}
		key := svc.Namespace + "/" + svc.Name + "." + svc.Namespace + ".svc." + in.DomainSuffix
		ports := map[string]int32{}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			found := false
			for _, ep := range slice.Ports {
				if ep.Port != nil && ep.Name != nil && *ep.Name == sp.Name {
					ports[strconv.Itoa(int(sp.Port))] = *ep.Port
					found = true
				}
			}
			if !found && len(slice.Endpoints) > 0 && sp.TargetPort.Type == 1 {
				msg := fmt.Sprintf("port %d targets the port name %q, which no endpoint of it declares; that port has no endpoints", sp.Port, sp.TargetPort.StrVal)
				if !reported[key+msg] {
					reported[key+msg] = true
					problems = append(problems, Problem{"Service", svc.Namespace, svc.Name, msg, false})
				}
			}
		}
		for _, ep := range slice.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || ep.TargetRef.UID == "" {
				continue
			}
			m := out[ep.TargetRef.UID]
			if m == nil {
				m = map[string]map[string]int32{}
				out[ep.TargetRef.UID] = m
			}
			if m[key] == nil {
				m[key] = map[string]int32{}
			}
			for k, v := range ports {
				m[key][k] = v
			}
		}
	}
	return out, problems
}
