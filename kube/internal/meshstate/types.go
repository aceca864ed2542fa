// Package meshstate turns the cluster's objects into the node process's local config:
// Istio's LOCAL_XDS_PATH format (DESIGN.md §4), written as JSON, which is YAML.
package meshstate

// Config is the whole file.
type Config struct {
	Workloads []Workload `json:"workloads"`
	Services  []Service  `json:"services"`
	Policies  []Policy   `json:"policies"`
}

// Workload is one pod.
type Workload struct {
	UID                   string                      `json:"uid"`
	Name                  string                      `json:"name"`
	Namespace             string                      `json:"namespace"`
	ServiceAccount        string                      `json:"serviceAccount"`
	TrustDomain           string                      `json:"trustDomain"`
	WorkloadIPs           []string                    `json:"workloadIps"`
	Protocol              string                      `json:"protocol"` // TCP | HBONE
	NetworkMode           string                      `json:"networkMode,omitempty"`
	Node                  string                      `json:"node"`
	ClusterID             string                      `json:"clusterId"`
	WorkloadName          string                      `json:"workloadName,omitempty"`
	WorkloadType          string                      `json:"workloadType,omitempty"`
	CanonicalName         string                      `json:"canonicalName,omitempty"`
	CanonicalRevision     string                      `json:"canonicalRevision,omitempty"`
	Status                string                      `json:"status"` // Healthy | Unhealthy
	AuthorizationPolicies []string                    `json:"authorizationPolicies,omitempty"`
	Services              map[string]map[string]int32 `json:"services,omitempty"` // "ns/hostname" -> {servicePort: targetPort}
}

// Service is one Service with a cluster IP (or headless).
type Service struct {
	Name      string           `json:"name"`
	Namespace string           `json:"namespace"`
	Hostname  string           `json:"hostname"`
	VIPs      []string         `json:"vips"`  // "network/ip"
	Ports     map[string]int32 `json:"ports"` // servicePort -> targetPort (0: per workload)
}

// Policy is one AuthorizationPolicy in ztunnel's L4 form.
type Policy struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Scope     string `json:"scope"`  // Global | Namespace | WorkloadSelector
	Action    string `json:"action"` // Allow | Deny
	DryRun    bool   `json:"dryRun"`
	// Rules: a rule matches if all its clauses match; a clause if any of its matches do.
	Rules [][][]Match `json:"rules"`
	// Selector is the workload selector (WorkloadSelector scope); not written out:
	// the workloads it selects name the policy instead, as istiod sends it.
	Selector map[string]string `json:"-"`
}

// Match is one match of a clause; every non-empty list must pass.
type Match struct {
	Namespaces          []StringMatch    `json:"namespaces,omitempty"`
	NotNamespaces       []StringMatch    `json:"notNamespaces,omitempty"`
	Principals          []StringMatch    `json:"principals,omitempty"`
	NotPrincipals       []StringMatch    `json:"notPrincipals,omitempty"`
	ServiceAccounts     []ServiceAccount `json:"serviceAccounts,omitempty"`
	NotServiceAccounts  []ServiceAccount `json:"notServiceAccounts,omitempty"`
	SourceIPs           []string         `json:"sourceIps,omitempty"` // CIDRs
	NotSourceIPs        []string         `json:"notSourceIps,omitempty"`
	DestinationIPs      []string         `json:"destinationIps,omitempty"`
	NotDestinationIPs   []string         `json:"notDestinationIps,omitempty"`
	DestinationPorts    []int32          `json:"destinationPorts,omitempty"`
	NotDestinationPorts []int32          `json:"notDestinationPorts,omitempty"`
}

// StringMatch is one of {Exact: s}, {Prefix: s}, {Suffix: s}, {Presence: ""}.
type StringMatch map[string]string

// Exact, Prefix, Suffix and Presence build StringMatches.
func Exact(s string) StringMatch  { return StringMatch{"Exact": s} }
func Prefix(s string) StringMatch { return StringMatch{"Prefix": s} }
func Suffix(s string) StringMatch { return StringMatch{"Suffix": s} }
func Presence() StringMatch       { return StringMatch{"Presence": ""} }

// ServiceAccount names one service account.
type ServiceAccount struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}
